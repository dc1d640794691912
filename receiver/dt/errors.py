"""The exception tree of the DT REST client.

::

    DtApiError                       base of everything the client raises (a `DtpushError`)
    ├── ConfigurationError           missing credentials or an unusable client option
    ├── TransportError               no HTTP answer; `maybe_sent` when the request may have arrived
    │   ├── ConnectionFailed         could not connect, or the connection dropped
    │   └── Timeout                  no answer within `request_timeout`
    ├── UnexpectedResponse           a 2xx answer whose body is not what the endpoint returns
    ├── AmbiguousConnectors          several connectors match where one was expected (`ids`)
    └── ApiError                     a non-2xx answer: `status`, DT's `error`, `code`, `help`
        ├── BadRequest               400  invalid argument (also: the token endpoint refused)
        ├── Unauthorized             401  (and the token endpoint's 400/401: bad credentials)
        ├── Forbidden                403  the service account lacks the role
        ├── NotFound                 404  unknown connector, device or project
        ├── Conflict                 409
        ├── TooManyRequests          429  `retry_after` seconds when DT said so
        ├── ServerError              5xx
        │   ├── InternalServerError  500
        │   ├── BadGateway           502
        │   ├── ServiceUnavailable   503
        │   └── GatewayTimeout       504
        └── UnknownError             any other status

DT's error body is ``{"error": "...", "code": 404, "help": "https://..."}``; when an answer has
no such body (an HTML page from a proxy, plain text) the error keeps a short excerpt of it
instead. Messages never carry a secret, a token or a whole body.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from receiver.errors import DtpushError

#: How much of a non-JSON error body is kept on the exception.
EXCERPT_CHARS = 200


class DtApiError(DtpushError):
    """Base class of the errors raised by `receiver.dt`."""


class ConfigurationError(DtApiError):
    """The client cannot be used as configured (missing credentials, bad option)."""


class TransportError(DtApiError):
    """The request got no HTTP answer.

    `maybe_sent` is true when the request may have reached DT (a timeout or a dropped
    connection after connecting); false when it certainly did not (connection refused).
    """

    def __init__(self, message: str, *, maybe_sent: bool) -> None:
        self.maybe_sent = maybe_sent
        super().__init__(message)


class ConnectionFailed(TransportError):
    """Could not connect to DT, or the connection broke before the answer."""


class Timeout(TransportError):
    """DT did not answer within the request timeout."""


class UnexpectedResponse(DtApiError):
    """A successful answer whose body does not have the shape the endpoint documents."""

    def __init__(self, message: str, *, status: int) -> None:
        self.status = status
        super().__init__(message)


class AmbiguousConnectors(DtApiError):
    """Several connectors carry the display name that should identify one."""

    def __init__(self, display_name: str, ids: Sequence[str]) -> None:
        self.display_name = display_name
        self.ids = tuple(ids)
        super().__init__(f"several connectors named {display_name!r}: {', '.join(self.ids)}")


class ApiError(DtApiError):
    """A non-2xx answer from DT.

    `status` is the HTTP status; `error`, `code` and `help` are DT's error body fields when the
    answer had them (`code` is DT's, usually equal to `status`); `excerpt` is the start of a
    body that was not DT's JSON error.
    """

    status_code: int = 0

    def __init__(
        self,
        status: int,
        *,
        error: str | None = None,
        code: int | None = None,
        help: str | None = None,
        excerpt: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.error = error
        self.code = code
        self.help = help
        self.excerpt = excerpt
        self.retry_after = retry_after
        detail = error if error else excerpt
        if self.status_code and status != self.status_code:
            # e.g. the token endpoint's 400, reported as Unauthorized
            message = f"{_REASONS[self.status_code]} (status {status})"
        else:
            message = f"{status} {_REASONS.get(status, 'error')}"
        if detail:
            message += f": {detail}"
        super().__init__(message)


class BadRequest(ApiError):
    status_code = 400


class Unauthorized(ApiError):
    status_code = 401


class Forbidden(ApiError):
    status_code = 403


class NotFound(ApiError):
    status_code = 404


class Conflict(ApiError):
    status_code = 409


class TooManyRequests(ApiError):
    status_code = 429


class ServerError(ApiError):
    """Any 5xx answer."""


class InternalServerError(ServerError):
    status_code = 500


class BadGateway(ServerError):
    status_code = 502


class ServiceUnavailable(ServerError):
    status_code = 503


class GatewayTimeout(ServerError):
    status_code = 504


class UnknownError(ApiError):
    """A status DT does not document."""


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status_code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        TooManyRequests,
        InternalServerError,
        BadGateway,
        ServiceUnavailable,
        GatewayTimeout,
    )
}

_REASONS = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    409: "conflict",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}


def error_for_status(
    status: int, body: Any, text: str, *, retry_after: float | None = None
) -> ApiError:
    """The typed error for a non-2xx answer.

    `body` is the parsed JSON of the answer (or None when it was not JSON); `text` its raw
    text, of which only a short excerpt is kept when `body` is not DT's error object.
    """
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if 500 <= status < 600 else UnknownError
    if isinstance(body, Mapping) and ("error" in body or "code" in body):
        raw_code = body.get("code")
        raw_help = body.get("help")
        return cls(
            status,
            error=_short(str(body.get("error", ""))) or None,
            code=raw_code if isinstance(raw_code, int) else None,
            help=_short(raw_help) if isinstance(raw_help, str) else None,
            retry_after=retry_after,
        )
    return cls(status, excerpt=_short(text) or None, retry_after=retry_after)


def _short(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= EXCERPT_CHARS:
        return text
    return text[: EXCERPT_CHARS - 1] + "…"
