"""Identifiers the way DT makes them: xids, plus random secrets for the emulator.

An xid is 12 bytes (4-byte big-endian Unix time, 3-byte machine id, 2-byte process id,
3-byte counter) written as 20 lowercase base32hex characters without padding, e.g.
``c82gg9catj3vmh4248og``. DT uses them for project, device, connector and event ids;
emulated devices are ``emu`` + xid.
"""

from __future__ import annotations

import base64
import random
import string

_SECRET_ALPHABET = string.ascii_letters + string.digits


def encode_xid(raw: bytes) -> str:
    """The 20-character text form of 12 raw xid bytes."""
    if len(raw) != 12:
        raise ValueError("an xid is 12 bytes")
    return base64.b32hexencode(raw).decode("ascii").rstrip("=").lower()


class IdFactory:
    """Makes xids and secrets from one random source (seed it for repeatable ids)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.SystemRandom()
        self._machine = self._rng.getrandbits(24).to_bytes(3, "big")
        self._pid = self._rng.getrandbits(16).to_bytes(2, "big")
        self._counter = self._rng.getrandbits(24)

    def xid(self, at: float) -> str:
        """A fresh xid whose time part is `at` (Unix seconds)."""
        self._counter = (self._counter + 1) % (1 << 24)
        seconds = int(at) % (1 << 32)
        raw = (
            seconds.to_bytes(4, "big")
            + self._machine
            + self._pid
            + self._counter.to_bytes(3, "big")
        )
        return encode_xid(raw)

    def secret(self, length: int = 40) -> str:
        """A random alphanumeric secret (cryptographically strong unless seeded)."""
        return "".join(self._rng.choice(_SECRET_ALPHABET) for _ in range(length))

    def token(self) -> str:
        """An opaque access token."""
        return self.secret(48)
