"""The data-connector OpenID configuration and JWKS: DT's shape, keys that verify, rotation."""

from __future__ import annotations

import hashlib
from typing import Any

import jwt
from aiohttp.test_utils import TestClient

from receiver.emulator import EmulatorState
from receiver.emulator.oidc import RETAIN_SECONDS
from tests.emulator.conftest import Clock

CONFIG_PATH = "/data-connector/.well-known/openid-configuration"


async def _config(client: TestClient[Any, Any]) -> dict[str, Any]:
    response = await client.get(CONFIG_PATH)
    assert response.status == 200
    config: dict[str, Any] = await response.json()
    return config


async def _jwks(client: TestClient[Any, Any]) -> dict[str, Any]:
    config = await _config(client)
    response = await client.session.get(config["jwks_uri"])  # absolute, as a verifier follows it
    assert response.status == 200
    jwks: dict[str, Any] = await response.json()
    return jwks


async def test_openid_configuration_names_issuer_jwks_and_es256(
    client: TestClient[Any, Any],
) -> None:
    config = await _config(client)

    base = str(client.make_url("")).rstrip("/")
    assert config["issuer"] == base + "/data-connector"
    assert config["jwks_uri"].startswith(base + "/data-connector/")
    assert config["id_token_signing_alg_values_supported"] == ["ES256"]


async def test_openid_configuration_needs_no_token(client: TestClient[Any, Any]) -> None:
    response = await client.get(CONFIG_PATH)

    assert response.status == 200


async def test_jwks_publishes_ec_p256_public_keys_only(client: TestClient[Any, Any]) -> None:
    jwks = await _jwks(client)

    (key,) = jwks["keys"]
    assert set(key) == {"kid", "kty", "crv", "x", "y", "use", "alg"}
    assert (key["kty"], key["crv"], key["use"], key["alg"]) == ("EC", "P-256", "sig", "ES256")
    assert "d" not in key


async def test_token_signed_with_state_key_verifies_against_served_jwks(
    client: TestClient[Any, Any], state: EmulatorState, clock: Clock
) -> None:
    config = await _config(client)
    jwks = await _jwks(client)
    body = b'{"event":{}}'
    claims = {
        "iss": config["issuer"],
        "sub": state.organization_id,
        "iat": int(clock()),
        "exp": int(clock()) + 3600,
        "checksum_sha256": hashlib.sha256(body).hexdigest(),
    }
    token = state.signing_keys.sign(claims)

    kid = jwt.get_unverified_header(token)["kid"]
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == kid)
    verified = jwt.decode(
        token,
        key,
        algorithms=config["id_token_signing_alg_values_supported"],
        issuer=config["issuer"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert verified == claims


async def test_rotation_publishes_new_key_and_keeps_old_one_for_a_while(
    client: TestClient[Any, Any], state: EmulatorState, clock: Clock
) -> None:
    old_kid = state.signing_keys.current.kid

    new = state.rotate_key(clock())
    during = [k["kid"] for k in (await _jwks(client))["keys"]]
    clock.advance(RETAIN_SECONDS + 1)
    after = [k["kid"] for k in (await _jwks(client))["keys"]]

    assert new.kid != old_kid
    assert state.signing_keys.current.kid == new.kid
    assert set(during) == {old_kid, new.kid}
    assert after == [new.kid]


async def test_token_from_rotated_out_key_no_longer_verifies(
    client: TestClient[Any, Any], state: EmulatorState, clock: Clock
) -> None:
    old_token = state.signing_keys.sign({"iss": "x"})
    state.rotate_key(clock())
    clock.advance(RETAIN_SECONDS + 1)
    jwks = await _jwks(client)

    kid = jwt.get_unverified_header(old_token)["kid"]
    assert kid not in {k["kid"] for k in jwks["keys"]}
