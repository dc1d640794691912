"""Pagination the way DT's list endpoints do it: ``pageSize``, ``pageToken``, ``nextPageToken``.

Page tokens are opaque to clients (here: the offset of the next item, base64url-encoded and
tagged, so a made-up token is refused with a 400). An empty ``nextPageToken`` ends the list.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TypeVar

from receiver.emulator.errors import bad_request

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_PREFIX = "emu-page:"


def parse_page_size(raw: str | None, *, default: int = DEFAULT_PAGE_SIZE) -> int:
    """`pageSize` from the query: absent or 0 → `default`; above the maximum → the maximum."""
    if raw is None or raw == "":
        return default
    try:
        size = int(raw)
    except ValueError as exc:
        raise bad_request("pageSize: must be an integer") from exc
    if size < 0:
        raise bad_request("pageSize: must not be negative")
    if size == 0:
        return default
    return min(size, MAX_PAGE_SIZE)


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{offset}".encode()).decode("ascii").rstrip("=")


def decode_token(token: str | None) -> int:
    """The offset a page token stands for (0 for no token); 400 for a token we did not make."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("utf-8")
        if not text.startswith(_PREFIX):
            raise ValueError(text)
        offset = int(text.removeprefix(_PREFIX))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise bad_request("pageToken: invalid page token") from exc
    if offset < 0:
        raise bad_request("pageToken: invalid page token")
    return offset


def paginate(items: Sequence[T], page_size: int, page_token: str | None) -> tuple[list[T], str]:
    """One page of `items` and the token of the next page ("" when this is the last)."""
    start = decode_token(page_token)
    end = start + page_size
    page = list(items[start:end])
    return page, (encode_token(end) if end < len(items) else "")
