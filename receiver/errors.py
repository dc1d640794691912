"""The exception tree of dtpush.

::

    DtpushError                      base of everything dtpush raises on purpose
    ├── ConfigError                  invalid settings; `problems` lists each one (exit code 2)
    ├── Refusal                      a push whose signature does not verify (401, `reason`)
    ├── TooLarge                     a push body over `server.max_body_bytes` (413)
    ├── Unavailable                  the inbox cannot take the push now (503, `retry_after`)
    ├── NotAnEvent                   a verified body that is not a DT event (quarantined, `reason`)
    └── HandlerError                 a handler that cannot be loaded or enabled (`name`)

Messages are short and lowercase; none ever carries a secret, a token or a whole body.
The DT REST client has its own tree in `receiver.dt.errors`.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Every refusal reason of spec §6, in the order of precedence of spec §13.
REFUSAL_REASONS: tuple[str, ...] = (
    "missing_signature",
    "malformed_token",
    "bad_algorithm",
    "unknown_key",
    "bad_signature",
    "missing_claim",
    "expired",
    "not_yet_valid",
    "bad_issuer",
    "bad_subject",
    "sha1_not_allowed",
    "checksum_mismatch",
)


class DtpushError(Exception):
    """Base class of the errors dtpush raises on purpose."""


class ConfigError(DtpushError):
    """Settings that cannot be used; each problem names its setting."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        super().__init__("; ".join(self.problems))


class Refusal(DtpushError):
    """A push whose signature does not verify; `reason` is one of `REFUSAL_REASONS`."""

    def __init__(self, reason: str) -> None:
        if reason not in REFUSAL_REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        self.reason = reason
        super().__init__(reason)


class TooLarge(DtpushError):
    """A push body over the configured limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"body larger than {limit} bytes")


class Unavailable(DtpushError):
    """The inbox cannot take a push now; DT should retry after `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: int = 5) -> None:
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(reason)


class NotAnEvent(DtpushError):
    """A verified body that is not a DT event; it is quarantined with `reason`."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class HandlerError(DtpushError):
    """A handler that cannot be found, loaded or configured."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(f"handler {name!r}: {message}")
