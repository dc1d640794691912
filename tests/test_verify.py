"""Push signature verification: DT's real vectors, every refusal reason, their precedence."""

from __future__ import annotations

import base64
import hashlib
import hmac
from importlib.resources import files
from typing import Any

import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from receiver.config import Secret, VerifySettings
from receiver.errors import Refusal
from receiver.verify import (
    AsymmetricVerifier,
    Claims,
    HmacVerifier,
    UnknownKey,
    Verifier,
    sign_es256,
    sign_hs256,
)

DATA = files("receiver") / "testing_data"
DT_SECRET = b"test-secret"  # the secret of DT's real vectors
SECRET = b"0123456789abcdef" * 4  # long enough for every HMAC size
NOW = 1_700_000_000
BODY = (DATA / "touch.json").read_bytes()
ISSUER = "https://identity.example/data-connector"
ORG = "org-123"


def vector(name: str, body_file: str) -> tuple[bytes, str, dict[str, Any]]:
    body = (DATA / body_file).read_bytes()
    token = (DATA / "signed" / f"{name}.x-dt-signature.jwt").read_text()
    claims = orjson.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return body, token, claims


TOUCH = vector("touch", "touch.json")
TEMPERATURE = vector("temperature", "temperature.json")
SHA1_ONLY = vector("touch-2022-01-sha1-only", "signed/touch-2022-01-sha1-only.body")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(
    claims: dict[str, Any] | bytes,
    *,
    header: dict[str, Any] | bytes | None = None,
    secret: bytes = SECRET,
) -> str:
    """A token built by hand, HMAC-SHA256-signed over exactly what it carries."""
    if header is None:
        header = {"alg": "HS256", "typ": "JWT"}
    head = header if isinstance(header, bytes) else orjson.dumps(header)
    payload = claims if isinstance(claims, bytes) else orjson.dumps(claims)
    signing_input = f"{b64(head)}.{b64(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def dt_claims(body: bytes = BODY, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "checksum": hashlib.sha1(body).hexdigest(),
        "checksum_sha256": hashlib.sha256(body).hexdigest(),
        "exp": NOW + 3600,
        "iat": NOW,
        "jti": "c82gg99hga35jc2afkeg",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not ...}


def refusal(
    verifier: HmacVerifier, tok: str | None, *, body: bytes = BODY, now: float = NOW
) -> str:
    with pytest.raises(Refusal) as caught:
        verifier.verify(body, tok, now=now)
    return caught.value.reason


HMAC = HmacVerifier([SECRET])


# --- DT's real vectors --------------------------------------------------------------


@pytest.mark.parametrize("vec", [TOUCH, TEMPERATURE], ids=["touch", "temperature"])
def test_real_dt_vector_at_its_iat_verifies_with_its_claims(vec: Any) -> None:
    body, tok, raw = vec
    claims = HmacVerifier([DT_SECRET], allow_sha1=False).verify(body, tok, now=raw["iat"])
    assert claims == Claims(
        iat=raw["iat"],
        exp=raw["iat"] + 3600,
        checksum_sha256=raw["checksum_sha256"],
        checksum=raw["checksum"],
        secret_index=0,
        jti=raw["jti"],
    )


def test_real_sha1_only_vector_verifies_when_sha1_is_allowed() -> None:
    body, tok, raw = SHA1_ONLY
    claims = HmacVerifier([DT_SECRET], allow_sha1=True).verify(body, tok, now=raw["iat"])
    assert claims.checksum == raw["checksum"]
    assert claims.checksum_sha256 is None


def test_real_sha1_only_vector_without_allow_sha1_is_sha1_not_allowed() -> None:
    body, tok, raw = SHA1_ONLY
    verifier = HmacVerifier([DT_SECRET], allow_sha1=False)
    assert refusal(verifier, tok, body=body, now=raw["iat"]) == "sha1_not_allowed"


def test_real_vector_with_another_secret_is_bad_signature() -> None:
    body, tok, raw = TOUCH
    assert refusal(HmacVerifier([b"not-the-secret"]), tok, body=body, now=raw["iat"]) == (
        "bad_signature"
    )


def test_real_vector_past_exp_plus_leeway_is_expired() -> None:
    body, tok, raw = TOUCH
    verifier = HmacVerifier([DT_SECRET], leeway_seconds=60)
    assert refusal(verifier, tok, body=body, now=raw["exp"] + 60 + 1) == "expired"


def test_real_vector_with_one_body_byte_changed_is_checksum_mismatch() -> None:
    body, tok, raw = TEMPERATURE
    tampered = body.replace(b'"value":27', b'"value":28')
    assert tampered != body
    verifier = HmacVerifier([DT_SECRET])
    assert refusal(verifier, tok, body=tampered, now=raw["iat"]) == "checksum_mismatch"


@pytest.mark.parametrize(
    ("vec", "sha256"), [(TOUCH, True), (TEMPERATURE, True), (SHA1_ONLY, False)]
)
def test_sign_hs256_reproduces_dt_real_tokens_byte_for_byte(vec: Any, sha256: bool) -> None:
    body, tok, raw = vec
    assert sign_hs256(body, DT_SECRET, iat=raw["iat"], sha256=sha256, jti=raw["jti"]) == tok


def test_sign_hs256_token_verifies_and_expires_an_hour_after_iat() -> None:
    tok = sign_hs256(BODY, DT_SECRET, iat=NOW)
    claims = HmacVerifier([DT_SECRET]).verify(BODY, tok, now=NOW)
    assert (claims.iat, claims.exp, claims.jti) == (NOW, NOW + 3600, None)


# --- time rules and leeway ----------------------------------------------------------


def test_exp_less_than_leeway_ago_is_accepted() -> None:
    tok = token(dt_claims(exp=NOW - 59, iat=NOW - 3659))
    assert HmacVerifier([SECRET], leeway_seconds=60).verify(BODY, tok, now=NOW).exp == NOW - 59


def test_exp_exactly_leeway_ago_is_expired() -> None:
    tok = token(dt_claims(exp=NOW - 60, iat=NOW - 3660))
    assert refusal(HmacVerifier([SECRET], leeway_seconds=60), tok) == "expired"


def test_iat_up_to_leeway_in_the_future_is_accepted() -> None:
    tok = token(dt_claims(iat=NOW + 60))
    assert HmacVerifier([SECRET], leeway_seconds=60).verify(BODY, tok, now=NOW).iat == NOW + 60


def test_iat_beyond_leeway_in_the_future_is_not_yet_valid() -> None:
    tok = token(dt_claims(iat=NOW + 61))
    assert refusal(HmacVerifier([SECRET], leeway_seconds=60), tok) == "not_yet_valid"


def test_zero_leeway_refuses_a_token_one_second_early() -> None:
    tok = token(dt_claims(iat=NOW + 1))
    assert refusal(HmacVerifier([SECRET], leeway_seconds=0), tok) == "not_yet_valid"


def test_fractional_time_claims_are_read_as_whole_seconds_like_pyjwt() -> None:
    tok = token(dt_claims(iat=NOW + 60.9))  # int(NOW + 60.9) == NOW + 60: within leeway
    assert HMAC.verify(BODY, tok, now=NOW).iat == pytest.approx(NOW + 60.9)


# --- secrets ------------------------------------------------------------------------


def test_second_secret_matching_reports_secret_index_1() -> None:
    tok = token(dt_claims(), secret=b"old-secret")
    claims = HmacVerifier([b"new-secret", b"old-secret"]).verify(BODY, tok, now=NOW)
    assert claims.secret_index == 1


def test_first_secret_matching_reports_secret_index_0() -> None:
    tok = token(dt_claims(), secret=b"new-secret")
    claims = HmacVerifier([b"new-secret", b"old-secret"]).verify(BODY, tok, now=NOW)
    assert claims.secret_index == 0


def test_a_one_byte_secret_is_accepted_no_minimum_length() -> None:
    tok = token(dt_claims(), secret=b"k")
    assert HmacVerifier([b"k"]).verify(BODY, tok, now=NOW).secret_index == 0


@pytest.mark.parametrize("secrets", [[], [b""], [SECRET, b""]])
def test_hmac_verifier_without_usable_secrets_is_a_value_error(secrets: list[bytes]) -> None:
    with pytest.raises(ValueError):
        HmacVerifier(secrets)


# --- checksums ----------------------------------------------------------------------


def test_upper_case_checksum_sha256_hex_is_accepted() -> None:
    tok = token(dt_claims(checksum_sha256=hashlib.sha256(BODY).hexdigest().upper()))
    assert HMAC.verify(BODY, tok, now=NOW).secret_index == 0


def test_upper_case_sha1_checksum_hex_is_accepted() -> None:
    tok = token(dt_claims(checksum=hashlib.sha1(BODY).hexdigest().upper(), checksum_sha256=...))
    assert HMAC.verify(BODY, tok, now=NOW).checksum_sha256 is None


def test_wrong_sha256_is_checksum_mismatch_even_with_a_right_sha1() -> None:
    tok = token(dt_claims(checksum_sha256=hashlib.sha256(b"other").hexdigest()))
    assert refusal(HMAC, tok) == "checksum_mismatch"


def test_right_sha256_is_accepted_even_with_a_wrong_sha1() -> None:
    tok = token(dt_claims(checksum=hashlib.sha1(b"other").hexdigest()))
    assert HMAC.verify(BODY, tok, now=NOW).checksum == hashlib.sha1(b"other").hexdigest()


def test_sha1_only_token_with_a_wrong_checksum_is_checksum_mismatch() -> None:
    tok = token(dt_claims(checksum_sha256=..., checksum="00" * 20))
    assert refusal(HMAC, tok) == "checksum_mismatch"


@pytest.mark.parametrize("value", [12, ["ab"], "é" * 64, "zz" * 32, ""])
def test_checksum_claim_that_is_not_hex_text_is_checksum_mismatch(value: Any) -> None:
    tok = token(dt_claims(checksum_sha256=value))
    assert refusal(HMAC, tok) == "checksum_mismatch"


# --- each refusal reason ------------------------------------------------------------


@pytest.mark.parametrize("tok", [None, ""])
def test_no_token_is_missing_signature(tok: str | None) -> None:
    assert refusal(HMAC, tok) == "missing_signature"


GOOD = token(dt_claims())
HEAD, CLAIMS, SIG = GOOD.split(".")


@pytest.mark.parametrize(
    "tok",
    [
        pytest.param(f"{HEAD}.{CLAIMS}", id="two-parts"),
        pytest.param(f"{HEAD}.{CLAIMS}.{SIG}.{SIG}", id="four-parts"),
        pytest.param(f"{HEAD}.{CLAIMS}!.{SIG}", id="foreign-character"),
        pytest.param(f"{HEAD}.{CLAIMS}.{SIG[:-1]}+", id="standard-base64-character"),
        pytest.param(f"{HEAD}.{CLAIMS}.{SIG}==", id="wrong-padding"),
        pytest.param(f"{HEAD}.{CLAIMS}.{SIG[:-1]}v", id="non-zero-trailing-bits"),
        pytest.param(f"{HEAD}.{CLAIMS}.{SIG}AA", id="length-4n+1"),
        pytest.param(f" {GOOD}", id="leading-space"),
        pytest.param(f"{HEAD}.{CLAIMS}.{SIG}é", id="non-ascii"),
        pytest.param(f"{HEAD}.{CLAIMS}.{SIG}\udcff", id="surrogate-escaped-byte"),
        pytest.param(token(b"[1,2]"), id="claims-array"),
        pytest.param(token(b"{'exp': 1}"), id="claims-not-json"),
        pytest.param(token(b'{"exp":NaN}'), id="claims-nan"),
        pytest.param(token(dt_claims(), header=b"HS256"), id="header-not-json"),
        pytest.param(token(dt_claims(), header=b'{"alg":"\xff"}'), id="header-not-utf8"),
        pytest.param(token(b"\xef\xbb\xbf{}"), id="claims-with-bom"),
        pytest.param(token(dt_claims(), header={"alg": "HS256", "kid": 1}), id="kid-not-text"),
        pytest.param(token(dt_claims(), header={"alg": "HS256", "crit": ["exp"]}), id="crit"),
        pytest.param(
            token(dt_claims(), header={"alg": "HS256", "b64": False, "crit": ["b64"]}),
            id="unencoded-payload",
        ),
    ],
)
def test_malformed_token_is_malformed_token(tok: str) -> None:
    assert refusal(HMAC, tok) == "malformed_token"


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "none", "typ": "JWT"},
        {"alg": "HS384"},
        {"alg": "HS512"},
        {"alg": "RS256"},
        {"alg": "ES256"},
        {"alg": "hs256"},
        {"alg": None},
        {"alg": ["HS256"]},
        {"typ": "JWT"},
    ],
    ids=repr,
)
def test_alg_other_than_hs256_is_bad_algorithm_even_when_the_hmac_matches(
    header: dict[str, Any],
) -> None:
    assert refusal(HMAC, token(dt_claims(), header=header)) == "bad_algorithm"


def test_alg_none_with_an_empty_signature_is_bad_algorithm() -> None:
    tok = b64(b'{"alg":"none"}') + f".{CLAIMS}."
    assert refusal(HMAC, tok) == "bad_algorithm"


@pytest.mark.parametrize(
    "tok",
    [
        pytest.param(f"{HEAD}.{CLAIMS}.", id="empty-signature"),
        pytest.param(f"{HEAD}.{CLAIMS}.{SIG[:-2]}AA", id="other-signature"),
        pytest.param(token(dt_claims(), secret=b"another"), id="other-secret"),
        pytest.param(f"{HEAD}.{token(dt_claims(iat=NOW + 1)).split('.')[1]}.{SIG}", id="spliced"),
    ],
)
def test_signature_not_made_with_the_secret_is_bad_signature(tok: str) -> None:
    assert refusal(HMAC, tok) == "bad_signature"


def test_signature_with_correct_padding_is_accepted_like_pyjwt() -> None:
    assert HMAC.verify(BODY, GOOD + "=", now=NOW).secret_index == 0


def test_header_with_kid_and_extra_fields_is_accepted() -> None:
    tok = token(dt_claims(), header={"typ": "JWT", "alg": "HS256", "kid": "k1", "x": [1]})
    assert HMAC.verify(BODY, tok, now=NOW).secret_index == 0


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"exp": ...}, id="no-exp"),
        pytest.param({"iat": ...}, id="no-iat"),
        pytest.param({"exp": None}, id="exp-null"),
        pytest.param({"exp": str(NOW + 3600)}, id="exp-text"),
        pytest.param({"iat": True}, id="iat-bool"),
        pytest.param({"iat": [NOW]}, id="iat-list"),
        pytest.param({"checksum": ..., "checksum_sha256": ...}, id="no-checksum"),
        pytest.param({"checksum": None, "checksum_sha256": None}, id="null-checksums"),
    ],
)
def test_token_without_a_usable_required_claim_is_missing_claim(changes: dict[str, Any]) -> None:
    assert refusal(HMAC, token(dt_claims(**changes))) == "missing_claim"


# --- precedence (spec §13) ----------------------------------------------------------


def test_malformed_claims_win_over_a_bad_algorithm() -> None:
    assert refusal(HMAC, token(b"not json", header={"alg": "none"})) == "malformed_token"


def test_malformed_signature_segment_wins_over_a_bad_algorithm() -> None:
    tok = token(dt_claims(), header={"alg": "HS512"})
    assert refusal(HMAC, tok[:-1] + "!") == "malformed_token"


def test_bad_algorithm_wins_over_a_bad_signature() -> None:
    tok = token(dt_claims(), header={"alg": "HS512"}, secret=b"another")
    assert refusal(HMAC, tok) == "bad_algorithm"


def test_bad_signature_wins_over_missing_claims() -> None:
    assert refusal(HMAC, token({}, secret=b"another")) == "bad_signature"


def test_missing_checksum_wins_over_expiry() -> None:
    tok = token(dt_claims(exp=NOW - 7200, checksum=..., checksum_sha256=...))
    assert refusal(HMAC, tok) == "missing_claim"


def test_expiry_wins_over_a_checksum_mismatch() -> None:
    tok = token(dt_claims(exp=NOW - 7200))
    assert refusal(HMAC, tok, body=b"tampered") == "expired"


def test_not_yet_valid_wins_over_sha1_not_allowed() -> None:
    tok = token(dt_claims(iat=NOW + 7200, checksum_sha256=...))
    assert refusal(HmacVerifier([SECRET], allow_sha1=False), tok) == "not_yet_valid"


def test_sha1_not_allowed_wins_over_a_checksum_mismatch() -> None:
    tok = token(dt_claims(checksum_sha256=...))
    verifier = HmacVerifier([SECRET], allow_sha1=False)
    assert refusal(verifier, tok, body=b"tampered") == "sha1_not_allowed"


# --- asymmetric scheme (pure part) --------------------------------------------------

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
KEYS = {"k1": KEY.public_key()}
ASYM = AsymmetricVerifier()


def asym_token(**changes: Any) -> str:
    return sign_es256(
        BODY,
        changes.pop("key", KEY),
        kid=changes.pop("kid", "k1"),
        issuer=changes.pop("issuer", ISSUER),
        iat=changes.pop("iat", NOW),
        subject=changes.pop("subject", ORG),
        **changes,
    )


def asym_refusal(tok: str | None, *, org_id: str | None = ORG, body: bytes = BODY) -> Refusal:
    with pytest.raises(Refusal) as caught:
        ASYM.verify(body, tok, KEYS, issuer=ISSUER, org_id=org_id, leeway_seconds=60, now=NOW)
    return caught.value


def test_asymmetric_token_from_a_known_key_verifies_with_subject_and_key_id() -> None:
    claims = ASYM.verify(
        BODY, asym_token(), KEYS, issuer=ISSUER, org_id=ORG, leeway_seconds=60, now=NOW
    )
    assert (claims.subject, claims.key_id, claims.secret_index) == (ORG, "k1", None)
    assert claims.checksum_sha256 == hashlib.sha256(BODY).hexdigest()


def test_asymmetric_any_subject_is_accepted_without_org_id() -> None:
    claims = ASYM.verify(
        BODY, asym_token(subject="x"), KEYS, issuer=ISSUER, org_id=None, leeway_seconds=60, now=NOW
    )
    assert claims.subject == "x"


def test_asymmetric_unknown_kid_is_unknown_key_carrying_the_kid() -> None:
    caught = asym_refusal(asym_token(kid="k2"))
    assert isinstance(caught, UnknownKey) and (caught.reason, caught.kid) == ("unknown_key", "k2")


def test_asymmetric_token_without_kid_is_unknown_key_without_kid() -> None:
    tok = token(dt_claims(), header={"alg": "ES256"})
    caught = asym_refusal(tok)
    assert isinstance(caught, UnknownKey) and caught.kid is None


def test_asymmetric_hs256_token_is_bad_algorithm() -> None:
    tok = token(dt_claims(iss=ISSUER, sub=ORG), header={"alg": "HS256", "kid": "k1"})
    assert asym_refusal(tok).reason == "bad_algorithm"


def test_asymmetric_es384_token_is_bad_algorithm() -> None:
    tok = token(dt_claims(), header={"alg": "ES384", "kid": "k1"})
    assert asym_refusal(tok).reason == "bad_algorithm"


def test_asymmetric_token_signed_by_another_key_is_bad_signature() -> None:
    assert asym_refusal(asym_token(key=OTHER_KEY)).reason == "bad_signature"


def test_asymmetric_wrong_issuer_is_bad_issuer() -> None:
    assert asym_refusal(asym_token(issuer="https://evil.example")).reason == "bad_issuer"


def test_asymmetric_wrong_subject_is_bad_subject() -> None:
    assert asym_refusal(asym_token(subject="org-other")).reason == "bad_subject"


def test_asymmetric_missing_subject_with_org_id_is_bad_subject() -> None:
    assert asym_refusal(asym_token(subject=None)).reason == "bad_subject"


def test_asymmetric_tampered_body_is_checksum_mismatch() -> None:
    assert asym_refusal(asym_token(), body=b"tampered").reason == "checksum_mismatch"


def test_asymmetric_expired_wins_over_a_bad_issuer() -> None:
    tok = asym_token(iat=NOW - 7200, issuer="https://evil.example")
    assert asym_refusal(tok).reason == "expired"


def test_asymmetric_bad_subject_wins_over_a_checksum_mismatch() -> None:
    tok = asym_token(subject="org-other")
    assert asym_refusal(tok, body=b"tampered").reason == "bad_subject"


def test_asymmetric_token_without_checksum_sha256_is_missing_claim() -> None:
    claims = {"iss": ISSUER, "sub": ORG, "iat": NOW, "exp": NOW + 60, "checksum": "00" * 20}
    tok = jwt.encode(claims, KEY, algorithm="ES256", headers={"kid": "k1"})
    assert asym_refusal(tok).reason == "missing_claim"


def test_asymmetric_missing_header_is_missing_signature() -> None:
    assert asym_refusal(None).reason == "missing_signature"


# --- Verifier: headers and configuration --------------------------------------------


async def test_verifier_finds_the_header_whatever_its_case_in_a_plain_dict() -> None:
    verifier = Verifier(secrets=[SECRET])
    claims = await verifier.verify(BODY, {"x-dt-signature": GOOD}, now=NOW)
    assert claims is not None and claims.secret_index == 0


async def test_verifier_without_the_header_is_missing_signature() -> None:
    with pytest.raises(Refusal, match="missing_signature"):
        await Verifier(secrets=[SECRET]).verify(BODY, {"X-Other": GOOD}, now=NOW)


async def test_verifier_insecure_without_schemes_checks_nothing() -> None:
    assert await Verifier(insecure=True).verify(b"anything", {}, now=NOW) is None


async def test_verifier_insecure_flag_is_ignored_when_secrets_are_configured() -> None:
    with pytest.raises(Refusal, match="missing_signature"):
        await Verifier(secrets=[SECRET], insecure=True).verify(BODY, {}, now=NOW)


def test_verifier_without_any_scheme_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Verifier()


async def test_verifier_from_settings_uses_every_secret_and_the_sha1_switch() -> None:
    settings = VerifySettings(
        secrets=(Secret("new-secret"), Secret(DT_SECRET.decode())), allow_sha1=False
    )
    verifier = Verifier.from_settings(settings)
    body, tok, raw = TOUCH
    claims = await verifier.verify(body, {"X-Dt-Signature": tok}, now=raw["iat"])
    assert claims is not None and claims.secret_index == 1
    body, tok, raw = SHA1_ONLY
    with pytest.raises(Refusal, match="sha1_not_allowed"):
        await verifier.verify(body, {"X-Dt-Signature": tok}, now=raw["iat"])
