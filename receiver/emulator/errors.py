"""DT's error answers, as the emulator gives them.

Every error the emulator answers has DT's body
``{"error": "<summary>", "code": <status>, "help": "https://docs.d21s.com/error/#<status>"}``.
State operations and views raise `ApiError`; one middleware in `api.py` turns it into that
answer. (The DT *client*'s errors live in `receiver.dt.errors`; this is the server side.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HELP_URL = "https://docs.d21s.com/error/#{code}"


def error_body(status: int, message: str) -> dict[str, Any]:
    """DT's error body for `status`."""
    return {"error": message, "code": status, "help": HELP_URL.format(code=status)}


class ApiError(Exception):
    """An answer other than 200: `status`, DT's `message`, optional extra `headers`."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)
