"""What one push looks like on the wire: its body and its headers (DT-PROTOCOL §1, §2).

Pure: the time (`now`), the ids (`jti`) and the signing key are arguments.

- Body: ``{"event":…,"labels":…,"metadata":…}``, compact JSON in DT's key order (the event
  object is already in DT's order, `devices.make_event`), with only the device labels whose
  keys the connector lists.
- Headers: ``Content-Type: application/json``; ``X-Dt-Signature`` (HS256 with the
  connector's signature secret: `checksum`, `checksum_sha256`, `exp` = `iat` + 3600, `iat`,
  `jti`) when that secret is not empty; ``DT-Asymmetric-Signature`` (ES256 with the current
  JWKS key: `kid` in the header; `checksum_sha256`, `iss`, `exp`, `iat`, `sub` = the
  organization id, `jti`); then the connector's own `httpConfig.headers`, which may add
  headers but not replace these three nor the ones that frame the request
  (``Content-Length``, ``Transfer-Encoding``, ``Host``, ``Connection``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from receiver.emulator.connectors import Connector
from receiver.emulator.devices import Device
from receiver.emulator.oidc import SigningKey
from receiver.jws import sign_es256, sign_hs256

CONTENT_TYPE = "application/json"
HMAC_HEADER = "X-Dt-Signature"
ASYMMETRIC_HEADER = "DT-Asymmetric-Signature"
TOKEN_LIFETIME_SECONDS = 3600
_RESERVED = frozenset(
    name.lower()
    for name in (
        "Content-Type",
        HMAC_HEADER,
        ASYMMETRIC_HEADER,
        "Content-Length",
        "Transfer-Encoding",
        "Host",
        "Connection",
    )
)


def forwarded_labels(labels: Mapping[str, str], keys: Iterable[str]) -> dict[str, str]:
    """The device labels a connector forwards: those of its `keys` the device has, in the
    connector's order."""
    return {key: labels[key] for key in keys if key in labels}


def push_body(device: Device, event: dict[str, Any], connector: Connector) -> bytes:
    """The exact bytes DT posts for `event` of `device` to `connector`."""
    return orjson.dumps(
        {
            "event": event,
            "labels": forwarded_labels(device.labels, connector.labels),
            "metadata": device.metadata(),
        }
    )


def push_headers(
    body: bytes,
    connector: Connector,
    *,
    key: SigningKey,
    issuer: str,
    organization_id: str,
    now: float,
    new_id: Callable[[], str],
) -> dict[str, str]:
    """The headers of one push attempt of `body`, tokens minted at `now`; `new_id` makes
    each token's `jti` (DT uses a fresh xid)."""
    iat = int(now)
    exp = iat + TOKEN_LIFETIME_SECONDS
    headers = {"Content-Type": CONTENT_TYPE}
    secret = connector.http_config.signature_secret
    if secret:
        headers[HMAC_HEADER] = sign_hs256(body, secret.encode(), iat=iat, exp=exp, jti=new_id())
    headers[ASYMMETRIC_HEADER] = sign_es256(
        body,
        key.private_key,
        kid=key.kid,
        issuer=issuer,
        iat=iat,
        exp=exp,
        subject=organization_id,
        jti=new_id(),
    )
    for name, value in connector.http_config.headers.items():
        if name.lower() not in _RESERVED:
            headers[name] = value
    return headers
