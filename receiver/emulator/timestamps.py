"""Time as DT writes it: RFC 3339 UTC with microseconds, and protobuf Duration strings."""

from __future__ import annotations

from datetime import UTC, datetime


def format_rfc3339(at: float) -> str:
    """`at` (Unix seconds) as DT writes event times: ``2019-05-16T08:21:21.076013Z``."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> float:
    """Unix seconds of an RFC 3339 date-time with an offset; `ValueError` otherwise."""
    if len(text) < 20 or text[10] not in "Tt ":
        raise ValueError("not an RFC 3339 date-time")
    parsed = datetime.fromisoformat(text.replace("z", "Z"))
    if parsed.tzinfo is None:
        raise ValueError("RFC 3339 date-time without an offset")
    try:
        return parsed.timestamp()
    except OverflowError as exc:
        raise ValueError("date-time out of range") from exc


def format_duration(seconds: float) -> str:
    """A protobuf Duration in JSON form: ``0.411s``, ``1s``, ``0.000250s``.

    Like protobuf, it writes 0, 3, 6 or 9 fractional digits, as few as keep the value.
    """
    nanos = round(max(seconds, 0.0) * 1_000_000_000)
    whole, frac = divmod(nanos, 1_000_000_000)
    if frac == 0:
        return f"{whole}s"
    if frac % 1_000_000 == 0:
        return f"{whole}.{frac // 1_000_000:03d}s"
    if frac % 1_000 == 0:
        return f"{whole}.{frac // 1_000:06d}s"
    return f"{whole}.{frac:09d}s"
