"""The HTTP side of the DT REST client: one session, authentication, retries, errors, pages.

A `Client` owns one `aiohttp.ClientSession` (or borrows the one it is given) and the
service-account credentials, and is meant to live as long as the service::

    async with Client.from_env() as client:
        connectors = await DataConnector.list_data_connectors(project_id, client=client)

Every request carries ``Authorization: Bearer <access token>``; the token is fetched before
the first request and again shortly before it expires, and once more when DT answers 401. How
failed attempts are repeated is `receiver.dt.retry.RetryPolicy`; a request marked not
`resendable` (a create) is never sent again once it may have reached DT. Any 2xx answer is a
success, including a 204 without a body. Non-2xx answers raise the typed errors of
`receiver.dt.errors`. Logs name the method, path, status and wait; never a body, header, token
or secret.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from receiver.dt.auth import ServiceAccountAuth, auth_from_env
from receiver.dt.errors import (
    ApiError,
    ConfigurationError,
    ConnectionFailed,
    Timeout,
    TransportError,
    Unauthorized,
    UnexpectedResponse,
    error_for_status,
)
from receiver.dt.retry import RetryPolicy, parse_retry_after

DEFAULT_API_URL = "https://api.disruptive-technologies.com/v2"
ENV_API_URL = "DT_API_URL"
USER_AGENT = f"dtpush aiohttp/{aiohttp.__version__}"

Params = Sequence[tuple[str, str]]
Sleep = Callable[[float], Awaitable[None]]

logger = logging.getLogger("receiver.dt")

_MISSING_CREDENTIALS = (
    "missing service-account credentials: set DT_SERVICE_ACCOUNT_KEY_ID, "
    "DT_SERVICE_ACCOUNT_SECRET and DT_SERVICE_ACCOUNT_EMAIL (or pass auth=)"
)


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: Any  # parsed JSON, or None when empty or not JSON
    text: str


class Client:
    """A DT REST API client: `request` one path, or `paginate` a collection."""

    def __init__(
        self,
        auth: ServiceAccountAuth | None = None,
        *,
        base_url: str = DEFAULT_API_URL,
        request_timeout: float = 10.0,
        request_attempts: int | None = None,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(request_timeout, bool) or not (
            isinstance(request_timeout, int | float) and request_timeout > 0
        ):
            raise ConfigurationError("request_timeout must be a number of seconds above 0")
        policy = retry if retry is not None else RetryPolicy()
        if request_attempts is not None:
            if isinstance(request_attempts, bool) or not (
                isinstance(request_attempts, int) and request_attempts >= 0
            ):
                raise ConfigurationError("request_attempts must be an integer of 0 or more")
            policy = replace(policy, retries=request_attempts)
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError("base_url must be an http(s) URL")
        self._auth = auth
        self._base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, connect=request_timeout)
        self._request_timeout = float(request_timeout)
        self._policy = policy
        self._session = session
        self._own_session = session is None
        self._sleep = sleep
        self._clock = clock
        self._token_lock: asyncio.Lock | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Client:
        """A client configured like the official SDK: ``DT_SERVICE_ACCOUNT_*``, ``DT_API_URL``
        and ``DT_TOKEN_URL`` (read here, once). `options` go to the constructor and win."""
        env = os.environ if environ is None else environ
        options.setdefault("auth", auth_from_env(env))
        options.setdefault("base_url", env.get(ENV_API_URL) or DEFAULT_API_URL)
        return cls(**options)

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def auth(self) -> ServiceAccountAuth | None:
        return self._auth

    @property
    def request_timeout(self) -> float:
        return self._request_timeout

    async def close(self) -> None:
        """Close the session if this client created it."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params = (),
        json: Any = None,
        resendable: bool = True,
        gone_ok_on_resend: bool = False,
    ) -> Any:
        """Send one API request (retried as the policy says); return the parsed JSON answer.

        `path` is appended to the base URL. Returns None for an empty (or non-JSON) 2xx body.
        `resendable=False` (creates) forbids repeating the request once it may have reached DT.
        `gone_ok_on_resend` turns a 404 into success when an earlier attempt may have arrived
        (a delete whose answer was lost).
        """
        data = orjson.dumps(json) if json is not None else None
        return await self._exchange(
            method,
            self._base_url + path,
            params=params,
            data=data,
            content_type="application/json" if data is not None else None,
            authorized=True,
            resendable=resendable,
            gone_ok_on_resend=gone_ok_on_resend,
        )

    async def pages(self, path: str, key: str, params: Params = ()) -> AsyncIterator[list[Any]]:
        """Yield the `key` list of every page of a paginated collection, following
        ``nextPageToken`` until it is empty."""
        token = ""
        seen: set[str] = set()
        while True:
            query = [*params, ("pageToken", token)] if token else list(params)
            body = await self.request("GET", path, params=query)
            if not isinstance(body, dict):
                raise UnexpectedResponse(f"page of {key} is not a json object", status=200)
            items = body.get(key, [])
            next_token = body.get("nextPageToken", "") or ""
            if not isinstance(items, list) or not isinstance(next_token, str):
                raise UnexpectedResponse(f"page of {key} has a bad shape", status=200)
            yield items
            if not next_token:
                return
            if next_token in seen:
                raise UnexpectedResponse(f"pages of {key} repeat a page token", status=200)
            seen.add(next_token)
            token = next_token

    async def paginate(self, path: str, key: str, params: Params = ()) -> list[Any]:
        """Every item of every page of a paginated collection."""
        items: list[Any] = []
        async for page in self.pages(path, key, params):
            items.extend(page)
        return items

    # -- authentication -------------------------------------------------------------------

    async def access_token(self) -> str:
        """A valid access token, fetched from the token endpoint when none is cached."""
        auth = self._auth
        if auth is None:
            raise ConfigurationError(_MISSING_CREDENTIALS)
        token = auth.cached_token(self._clock())
        if token is not None:
            return token
        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        async with self._token_lock:
            token = auth.cached_token(self._clock())
            if token is not None:
                return token
            form = auth.token_request_form(self._clock())
            try:
                answer = await self._exchange(
                    "POST",
                    auth.token_url,
                    params=(),
                    data=urlencode(form).encode(),
                    content_type="application/x-www-form-urlencoded",
                    authorized=False,
                    resendable=True,
                    gone_ok_on_resend=False,
                )
            except ApiError as exc:
                if exc.status in (400, 401):
                    raise Unauthorized(
                        exc.status,
                        error="could not authenticate with the service-account credentials",
                        code=exc.code,
                        help=exc.help,
                    ) from None
                raise
            logger.debug("dt_token_fetched", extra={"fields": {"key_id": auth.key_id}})
            return auth.accept(answer, self._clock())

    # -- one call, with its retries -------------------------------------------------------

    async def _exchange(
        self,
        method: str,
        url: str,
        *,
        params: Params,
        data: bytes | None,
        content_type: str | None,
        authorized: bool,
        resendable: bool,
        gone_ok_on_resend: bool,
    ) -> Any:
        retry = 0
        waited = 0.0
        refreshed = False
        maybe_arrived = False
        path = url.removeprefix(self._base_url)
        while True:
            headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
            if content_type is not None:
                headers["Content-Type"] = content_type
            token = ""
            if authorized:
                token = await self.access_token()
                headers["Authorization"] = f"Bearer {token}"
            try:
                answer = await self._send(method, url, params=params, data=data, headers=headers)
            except TransportError as exc:
                delay = self._policy.delay(
                    retry=retry, waited=waited, maybe_sent=exc.maybe_sent, resendable=resendable
                )
                maybe_arrived = maybe_arrived or exc.maybe_sent
                if delay is None:
                    raise
                _log_retry(
                    {"method": method, "path": path, "error": type(exc).__name__}, delay, retry
                )
                await self._sleep(delay)
                waited += delay
                retry += 1
                continue
            fields: dict[str, Any] = {"method": method, "path": path, "status": answer.status}
            logger.debug("dt_request", extra={"fields": fields})
            if 200 <= answer.status < 300:
                return answer.body
            if answer.status == 401 and authorized and not refreshed and self._auth is not None:
                refreshed = True
                self._auth.invalidate(token)
                logger.info("dt_token_rejected", extra={"fields": {"method": method, "path": path}})
                continue
            if answer.status == 404 and gone_ok_on_resend and maybe_arrived:
                return None
            retry_after = None
            if answer.status in (429, 503):
                retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            error = error_for_status(
                answer.status, answer.body, answer.text, retry_after=retry_after
            )
            unsafe = not resendable and answer.status not in (429, 503)
            delay = None
            if not unsafe:
                delay = self._policy.delay(
                    retry=retry, waited=waited, status=answer.status, retry_after=retry_after
                )
            if delay is None:
                raise error
            _log_retry(fields, delay, retry)
            await self._sleep(delay)
            waited += delay
            retry += 1

    async def _send(
        self,
        method: str,
        url: str,
        *,
        params: Params,
        data: bytes | None,
        headers: Mapping[str, str],
    ) -> _Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.request(
                method,
                url,
                params=list(params) or None,
                data=data,
                headers=dict(headers),
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                raw = await response.read()
                status = response.status
                answer_headers = {k: v for k, v in response.headers.items()}
        except aiohttp.ConnectionTimeoutError:
            raise Timeout("dt api: connect timed out", maybe_sent=False) from None
        except aiohttp.ClientConnectorError as exc:
            raise ConnectionFailed(
                f"dt api: cannot connect to {exc.host}:{exc.port}", maybe_sent=False
            ) from None
        except TimeoutError:
            raise Timeout(
                f"dt api: no answer within {self._request_timeout:g} s", maybe_sent=True
            ) from None
        except aiohttp.ClientError as exc:
            raise ConnectionFailed(
                f"dt api: connection failed ({type(exc).__name__})", maybe_sent=True
            ) from None
        text = raw.decode("utf-8", errors="replace")
        body: Any = None
        if raw.strip():
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
        return _Answer(status, answer_headers, body, text)


def _log_retry(fields: dict[str, Any], delay: float, retry: int) -> None:
    fields = {**fields, "wait": round(delay, 3), "retry": retry + 1}
    logger.warning("dt_request_retry", extra={"fields": fields})


def outcome_unknown(exc: BaseException) -> bool:
    """Whether a failed request may nevertheless have been carried out by DT."""
    if isinstance(exc, TransportError):
        return exc.maybe_sent
    return isinstance(exc, ApiError) and exc.status in (500, 502, 504)


__all__ = ["DEFAULT_API_URL", "ENV_API_URL", "Client", "outcome_unknown"]
