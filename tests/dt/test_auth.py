"""The service-account credentials: the JWT assertion, the token cache, the environment."""

from __future__ import annotations

import jwt
import pytest

from receiver.dt import ConfigurationError, ServiceAccountAuth, auth_from_env
from receiver.dt.auth import DEFAULT_TOKEN_URL, GRANT_TYPE

SECRET = "a-service-account-secret-0123456789"
NOW = 1_700_000_000.0


def make_auth(**options: object) -> ServiceAccountAuth:
    return ServiceAccountAuth("key-1", SECRET, "sa@example.d21s.com", **options)  # type: ignore[arg-type]


def test_assertion_is_hs256_with_kid_iss_aud_and_at_most_an_hour_of_life() -> None:
    token = make_auth().assertion(NOW)

    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        audience=DEFAULT_TOKEN_URL,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert header["alg"] == "HS256"
    assert header["kid"] == "key-1"
    assert claims["iss"] == "sa@example.d21s.com"
    assert claims["aud"] == DEFAULT_TOKEN_URL
    assert claims["iat"] <= NOW
    assert claims["iat"] > NOW - 30
    assert claims["exp"] - claims["iat"] <= 3600
    assert claims["exp"] > NOW


def test_assertion_audience_is_the_configured_token_url() -> None:
    token = make_auth(token_url="http://127.0.0.1:9/oauth2/token").assertion(NOW)

    claims = jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        audience="http://127.0.0.1:9/oauth2/token",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["aud"] == "http://127.0.0.1:9/oauth2/token"


def test_token_request_form_is_the_jwt_bearer_grant() -> None:
    form = make_auth().token_request_form(NOW)

    assert form["grant_type"] == GRANT_TYPE == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert jwt.get_unverified_header(form["assertion"])["kid"] == "key-1"


def test_cached_token_is_refreshed_before_it_expires() -> None:
    auth = make_auth(refresh_margin=60)
    auth.accept({"access_token": "abc", "expires_in": 3600}, NOW)

    assert auth.cached_token(NOW + 3000) == "abc"
    assert auth.cached_token(NOW + 3541) is None  # inside the 60 s margin: refresh now
    assert auth.cached_token(NOW + 3700) is None


def test_short_lived_token_is_still_used_for_half_its_life() -> None:
    auth = make_auth(refresh_margin=60)
    auth.accept({"access_token": "abc", "expires_in": 30}, NOW)

    assert auth.cached_token(NOW + 10) == "abc"
    assert auth.cached_token(NOW + 16) is None


def test_invalidate_forgets_only_the_rejected_token() -> None:
    auth = make_auth()
    auth.accept({"access_token": "new", "expires_in": 3600}, NOW)

    auth.invalidate("old")
    assert auth.cached_token(NOW) == "new"
    auth.invalidate("new")
    assert auth.cached_token(NOW) is None


@pytest.mark.parametrize(
    "answer",
    [[], {"token_type": "bearer"}, {"access_token": ""}, {"access_token": "t", "expires_in": "x"}],
)
def test_token_answer_without_a_usable_token_is_rejected(answer: object) -> None:
    from receiver.dt import UnexpectedResponse

    with pytest.raises(UnexpectedResponse):
        make_auth().accept(answer, NOW)


def test_repr_never_shows_the_secret() -> None:
    auth = make_auth()
    auth.accept({"access_token": "the-access-token", "expires_in": 3600}, NOW)

    assert SECRET not in repr(auth)
    assert "the-access-token" not in repr(auth)
    assert "key-1" in repr(auth)


def test_missing_credential_is_a_configuration_error_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="secret"):
        ServiceAccountAuth("key-1", "", "sa@example.d21s.com")


def test_auth_from_env_reads_the_sdk_variables_and_token_url() -> None:
    auth = auth_from_env(
        {
            "DT_SERVICE_ACCOUNT_KEY_ID": "k",
            "DT_SERVICE_ACCOUNT_SECRET": SECRET,
            "DT_SERVICE_ACCOUNT_EMAIL": "e@x",
            "DT_TOKEN_URL": "http://127.0.0.1:1/oauth2/token",
        }
    )

    assert auth is not None
    assert (auth.key_id, auth.email, auth.token_url) == (
        "k",
        "e@x",
        "http://127.0.0.1:1/oauth2/token",
    )


def test_auth_from_env_without_variables_is_none() -> None:
    assert auth_from_env({}) is None


def test_auth_from_env_with_some_variables_names_the_missing_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        auth_from_env({"DT_SERVICE_ACCOUNT_KEY_ID": "k"})

    assert "DT_SERVICE_ACCOUNT_SECRET" in str(caught.value)
    assert "DT_SERVICE_ACCOUNT_EMAIL" in str(caught.value)
