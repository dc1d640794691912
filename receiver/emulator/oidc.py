"""The data-connector identity: EC P-256 signing keys, their JWKS and OpenID configuration.

DT signs ``DT-Asymmetric-Signature`` tokens (ES256) with keys published at the JWKS that
``/data-connector/.well-known/openid-configuration`` names (DT-PROTOCOL §2.5). The
emulator holds the private keys: the push side signs with `SigningKeys.sign`; `rotate`
makes a new current key and keeps the previous ones published for `retain_seconds`, so a
receiver that re-fetches the JWKS on an unknown ``kid`` follows the rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ALGORITHM = "ES256"
ISSUER_PATH = "/data-connector"
OPENID_CONFIGURATION_PATH = "/data-connector/.well-known/openid-configuration"
JWKS_PATH = "/data-connector/.well-known/jwks.json"
#: How long a rotated-out key stays in the JWKS (tokens live 1 h; keep it for 2).
RETAIN_SECONDS = 2 * 3600.0


def issuer_for(base_url: str) -> str:
    """The issuer of a cloud served at `base_url` (DT's: ``https://identity…/data-connector``)."""
    return base_url.rstrip("/") + ISSUER_PATH


def openid_configuration(base_url: str) -> dict[str, Any]:
    base = base_url.rstrip("/")
    return {
        "issuer": issuer_for(base),
        "jwks_uri": base + JWKS_PATH,
        "id_token_signing_alg_values_supported": [ALGORITHM],
        "subject_types_supported": ["public"],
        "response_types_supported": ["id_token"],
    }


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    created_at: float
    retired_at: float | None = None

    def public_jwk(self) -> dict[str, Any]:
        jwk = ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {
            "kty": jwk["kty"],
            "crv": jwk["crv"],
            "x": jwk["x"],
            "y": jwk["y"],
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM,
        }


def new_signing_key(kid: str, created_at: float) -> SigningKey:
    return SigningKey(kid, ec.generate_private_key(ec.SECP256R1()), created_at)


class SigningKeys:
    """The current key plus recently retired ones (all published until they age out)."""

    def __init__(self, first: SigningKey, *, retain_seconds: float = RETAIN_SECONDS) -> None:
        self._keys: list[SigningKey] = [first]
        self.retain_seconds = retain_seconds

    @property
    def current(self) -> SigningKey:
        return self._keys[-1]

    def rotate(self, new: SigningKey, now: float) -> SigningKey:
        """Make `new` current; the old one stays published for `retain_seconds`."""
        old = self._keys[-1]
        self._keys[-1] = SigningKey(old.kid, old.private_key, old.created_at, retired_at=now)
        self._keys.append(new)
        return new

    def published(self, now: float) -> list[SigningKey]:
        """Keys in the JWKS now: the current one and those retired less than a while ago."""
        return [
            key
            for key in self._keys
            if key.retired_at is None or now - key.retired_at < self.retain_seconds
        ]

    def jwks(self, now: float) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in reversed(self.published(now))]}

    def sign(self, claims: dict[str, Any], key: SigningKey | None = None) -> str:
        """An ES256 JWT over `claims`, with the signing key's ``kid`` in its header."""
        signer = key or self.current
        return jwt.encode(
            claims, signer.private_key, algorithm=ALGORITHM, headers={"kid": signer.kid}
        )

    def find(self, kid: str) -> SigningKey | None:
        return next((key for key in self._keys if key.kid == kid), None)
