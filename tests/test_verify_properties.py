"""The hand-written HS256 check takes PyJWT 2.15's accept/refuse decision (Hypothesis).

The oracle is PyJWT itself: ``jwt.decode(token, secret, algorithms=["HS256"],
options=OPTIONS, leeway=...)`` tried with each secret, its clock set to the same `now`
(PyJWT reads the wall clock; `FrozenClockPyJWT` hands it ours), followed by the rules our
verifier adds on purpose (receiver/verify.py and receiver/jws.py docstrings):

1. a checksum claim is required and must match the body (`checksum_sha256` first, SHA-1
   `checksum` only when allowed) — PyJWT knows nothing of checksums;
2. `exp`/`iat` must be JSON numbers — PyJWT's ``int()`` also takes numeric strings and
   booleans;
3. header and claims are JSON as orjson reads it (RFC 8259 in UTF-8: no NaN/Infinity, no
   UTF-16/32 or BOM, no overflowing numbers, no lone surrogate escapes);
4. a token that cannot be encoded (surrogate escapes) is refused — PyJWT raises
   ``UnicodeEncodeError`` there.

`aud`, `iss`, `sub`, `jti` and `nbf` are not checked by our verifier (DT sends none but `jti`),
so OPTIONS turns those checks off in PyJWT too. Each divergence is also shown on its own at
the end of this file: PyJWT accepts, we refuse.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
import warnings
from typing import Any

import jwt
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jwt.warnings import InsecureKeyLengthWarning

from receiver.errors import REFUSAL_REASONS, Refusal
from receiver.verify import HmacVerifier

NOW = 1_700_000_000
BODY = b'{"event":{"eventId":"c82gg9catj3vmh4248og","eventType":"touch"}}'
SHA256 = hashlib.sha256(BODY).hexdigest()
SHA1 = hashlib.sha1(BODY).hexdigest()
OPTIONS: Any = {
    "require": ["exp", "iat"],
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
    "verify_nbf": False,
}
B64URL = string.ascii_letters + string.digits + "-_"
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class FrozenClockPyJWT(jwt.PyJWT):
    """PyJWT unchanged, except that its time checks read `now` instead of the wall clock."""

    def __init__(self, now: float) -> None:
        super().__init__()
        self.now = now

    def _validate_iat(self, payload: dict[str, Any], now: float, leeway: float) -> None:
        super()._validate_iat(payload, self.now, leeway)

    def _validate_exp(self, payload: dict[str, Any], now: float, leeway: float) -> None:
        super()._validate_exp(payload, self.now, leeway)


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


def _strict_json(segment: str) -> bool:
    try:
        orjson.loads(jwt.utils.base64url_decode(segment.rstrip("=")))
    except orjson.JSONDecodeError:
        return False
    return True


def _hex_equal(claimed: object, digest: str) -> bool:
    return isinstance(claimed, str) and claimed.lower() == digest


def oracle_accepts(
    token: str, body: bytes, secrets: list[bytes], *, leeway: float, now: float, allow_sha1: bool
) -> bool:
    """PyJWT's decision, then our documented extra rules."""
    decoder = FrozenClockPyJWT(now)
    for secret in secrets:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                claims = decoder.decode(
                    token, secret, algorithms=["HS256"], options=OPTIONS, leeway=leeway
                )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError:
            return False
        except UnicodeEncodeError:  # rule 4
            return False
        break
    else:
        return False
    header_segment, claims_segment, _ = token.split(".")
    if not (_strict_json(header_segment) and _strict_json(claims_segment)):  # rule 3
        return False
    if not (_is_number(claims["exp"]) and _is_number(claims["iat"])):  # rule 2
        return False
    sha256, sha1 = claims.get("checksum_sha256"), claims.get("checksum")  # rule 1
    if sha256 is not None:
        return _hex_equal(sha256, hashlib.sha256(body).hexdigest())
    return sha1 is not None and allow_sha1 and _hex_equal(sha1, hashlib.sha1(body).hexdigest())


def ours_accepts(
    token: str, body: bytes, secrets: list[bytes], *, leeway: float, now: float, allow_sha1: bool
) -> bool:
    verifier = HmacVerifier(secrets, leeway_seconds=leeway, allow_sha1=allow_sha1)
    try:
        claims = verifier.verify(body, token, now=now)
    except Refusal as refusal:
        assert refusal.reason in REFUSAL_REASONS
        return False
    assert claims.secret_index is not None
    assert secrets[claims.secret_index]
    return True


# --- strategies ---------------------------------------------------------------------

secret_st = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=70).map(
    str.encode
)
leeway_st = st.sampled_from([0, 1, 60, 0.5, 3600])
now_st = st.sampled_from([NOW, NOW + 0.25, NOW + 0.999])


def often(draw: st.DrawFn, tenths: int) -> bool:
    """True `tenths` times in ten (Hypothesis favours 0 in small integer ranges)."""
    return draw(st.sampled_from([True] * tenths + [False] * (10 - tenths)))


BOUNDARY_OFFSETS = [0, 1, -1, 59, 60, 61, -59, -60, -61, 3600, -3600, 3599, -3601]


@st.composite
def time_claim(draw: st.DrawFn, future: bool) -> object:
    """A time near the interesting boundaries (exp mostly ahead, iat mostly behind `NOW`),
    now and then of a type PyJWT's int() also takes, or absurd."""
    ahead = st.integers(-100, 5000) if future else st.integers(-5000, 100)
    offset = draw(st.sampled_from(BOUNDARY_OFFSETS) | ahead | st.floats(-200, 200))
    value = NOW + offset
    odd = [int(value), str(int(value)), True, None, [value], 1e30, -1e30]
    return draw(st.sampled_from([value] * 60 + odd))


hex_claim = st.sampled_from(
    ["right"] * 10 + ["upper", "wrong", "absent", "absent", "null", "number"]
)


def checksum(kind: str, right: str) -> object:
    return {
        "right": right,
        "upper": right.upper(),
        "wrong": "0" * len(right),
        "null": None,
        "number": 12,
    }[kind]


@st.composite
def claim_set(draw: st.DrawFn) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    sha1_kind, sha256_kind = draw(hex_claim), draw(hex_claim)
    if sha1_kind != "absent":
        claims["checksum"] = checksum(sha1_kind, SHA1)
    if sha256_kind != "absent":
        claims["checksum_sha256"] = checksum(sha256_kind, SHA256)
    if often(draw, 9):
        claims["exp"] = draw(time_claim(future=True))
    if often(draw, 9):
        claims["iat"] = draw(time_claim(future=False))
    extra = st.sampled_from(["jti", "nbf", "aud", "sub", "iss", "x"])
    claims.update(draw(st.dictionaries(extra, st.none() | st.integers() | st.text(max_size=5))))
    if draw(st.booleans()):  # DT's order vs. any other
        claims = dict(draw(st.permutations(list(claims.items()))))
    return claims


alg_st = st.sampled_from(
    ["HS256"] * 12 + ["none", "HS384", "HS512", "RS256", "ES256", "hs256", "", None]
)


@st.composite
def header_set(draw: st.DrawFn) -> dict[str, Any]:
    header: dict[str, Any] = {}
    if often(draw, 9):
        header["alg"] = draw(alg_st | st.just(["HS256"]))
    if draw(st.booleans()):
        header["typ"] = draw(st.sampled_from(["JWT", "jwt", None, 1]))
    if often(draw, 2):
        header["kid"] = draw(st.sampled_from(["k1", "", 1, None, ["k"]]))
    if often(draw, 2):
        header["crit"] = draw(st.sampled_from([["b64"], [], ["exp"], "b64", [1], ["b64", "b64"]]))
    if often(draw, 2):
        header["b64"] = draw(st.sampled_from([True, False, 0, "false"]))
    return header


def raw_json(pairs: list[tuple[str, Any]]) -> bytes:
    """A JSON object that may repeat keys (json.dumps of a dict cannot)."""
    return ("{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}").encode()


@st.composite
def json_part(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    """`base` as JSON, sometimes spelt oddly or replaced by something that is not JSON."""
    kind = draw(
        st.sampled_from(
            ["plain"] * 16
            + ["spaces", "duplicate", "utf16", "bom", "nan", "array", "garbage", "escaped"]
        )
    )
    if kind == "plain":
        return json.dumps(base, separators=(",", ":")).encode()
    if kind == "spaces":
        return b" \n" + json.dumps(base, indent=1).encode() + b"\t"
    if kind == "duplicate":
        pairs = list(base.items())
        if pairs:
            key = draw(st.sampled_from([k for k, _ in pairs]))
            decoy: Any = draw(st.sampled_from(["HS512", "none", 0, None, "x"]))
            pairs.insert(draw(st.integers(0, len(pairs))), (key, decoy))
        return raw_json(pairs)
    if kind == "utf16":
        return json.dumps(base).encode("utf-16")
    if kind == "bom":
        return b"\xef\xbb\xbf" + json.dumps(base).encode()
    if kind == "nan":
        return raw_json([*base.items(), ("n", float("nan"))])
    if kind == "array":
        return json.dumps([base]).encode()
    if kind == "escaped":
        return json.dumps(base, ensure_ascii=True).replace('"k', '"\\u006b').encode()
    return draw(st.binary(max_size=40))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(signing_input: str, secret: bytes) -> str:
    return b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


@st.composite
def verification_case(draw: st.DrawFn) -> dict[str, Any]:
    secrets = draw(st.lists(secret_st, min_size=1, max_size=3))
    return {
        "secrets": secrets,
        "signer": draw(st.sampled_from(secrets)) if often(draw, 8) else draw(secret_st),
        "leeway": draw(leeway_st),
        "now": draw(now_st),
        "allow_sha1": draw(st.booleans()),
        "body": draw(st.sampled_from([BODY] * 6 + [BODY + b" ", b""])),
    }


def check(case: dict[str, Any], token: str) -> None:
    args = (token, case["body"], case["secrets"])
    options = {"leeway": case["leeway"], "now": case["now"], "allow_sha1": case["allow_sha1"]}
    decision = ours_accepts(*args, **options)
    event("accepted" if decision else "refused")
    assert decision == oracle_accepts(*args, **options)


# --- properties ---------------------------------------------------------------------


@PROPERTY
@given(case=verification_case(), claims=claim_set())
def test_pyjwt_signed_tokens_get_pyjwt_decision(
    case: dict[str, Any], claims: dict[str, Any]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        token = jwt.api_jws.encode(json.dumps(claims).encode(), case["signer"], "HS256")
    check(case, token)


@PROPERTY
@given(case=verification_case(), claims=claim_set(), header=header_set(), data=st.data())
def test_hand_built_headers_and_json_get_pyjwt_decision(
    case: dict[str, Any], claims: dict[str, Any], header: dict[str, Any], data: st.DataObject
) -> None:
    if data.draw(st.booleans()):  # claims that pass, so that the header and spelling decide
        claims = {**claims, "exp": NOW + 3600, "iat": NOW, "checksum_sha256": SHA256}
    head = data.draw(json_part(header))
    payload = data.draw(json_part(claims))
    signing_input = f"{b64(head)}.{b64(payload)}"
    check(case, f"{signing_input}.{hs256(signing_input, case['signer'])}")


@st.composite
def respelt_segment(draw: st.DrawFn, segment: str) -> str:
    """The same bytes spelt with '=' padding or non-zero trailing bits, or broken."""
    kind = draw(st.sampled_from(["as-is"] * 3 + ["pad"] * 2 + ["trailing-bits"] * 2 + ["junk"]))
    if kind == "pad":
        return segment + "=" * draw(st.integers(1, 4))
    if kind == "trailing-bits" and len(segment) % 4 in (2, 3):
        return segment[:-1] + draw(st.sampled_from(B64URL))
    if kind == "junk":
        index = draw(st.integers(0, len(segment)))
        return segment[:index] + draw(st.sampled_from("+/= .!é\x00")) + segment[index:]
    return segment


@PROPERTY
@given(case=verification_case(), claims=claim_set(), data=st.data())
def test_padding_and_trailing_bits_get_pyjwt_decision_when_signed_as_spelt(
    case: dict[str, Any], claims: dict[str, Any], data: st.DataObject
) -> None:
    claims = {**claims, "exp": NOW + 3600, "iat": NOW, "checksum_sha256": SHA256}
    head = data.draw(respelt_segment(b64(b'{"alg":"HS256","typ":"JWT"}')))
    payload = data.draw(respelt_segment(b64(json.dumps(claims).encode())))
    signing_input = f"{head}.{payload}"
    signature = data.draw(respelt_segment(hs256(signing_input, case["signer"])))
    check(case, f"{signing_input}.{signature}")


MUTATION_CHARS = B64URL + "=.+/ é\x00\udcff"


@st.composite
def mutated(draw: st.DrawFn, token: str) -> str:
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, max(len(token) - 1, 0)))
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "swap-segments"]))
        char = draw(st.sampled_from(MUTATION_CHARS))
        if op == "replace":
            token = token[:index] + char + token[index + 1 :]
        elif op == "insert":
            token = token[:index] + char + token[index:]
        elif op == "delete":
            token = token[:index] + token[index + 1 :]
        elif op == "truncate":
            token = token[:index]
        else:
            parts = token.split(".")
            token = ".".join(draw(st.permutations(parts)))
    return token


@PROPERTY
@given(case=verification_case(), claims=claim_set(), data=st.data())
def test_mutated_tokens_get_pyjwt_decision(
    case: dict[str, Any], claims: dict[str, Any], data: st.DataObject
) -> None:
    claims = {**claims, "exp": NOW + 3600, "iat": NOW, "checksum_sha256": SHA256}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        token = jwt.api_jws.encode(json.dumps(claims).encode(), case["signer"], "HS256")
    check(case, data.draw(mutated(token)))


@settings(max_examples=150, deadline=None)
@given(case=verification_case(), token=st.text(max_size=60) | st.from_regex(r"[\w=.-]{0,60}"))
def test_arbitrary_text_gets_pyjwt_decision(case: dict[str, Any], token: str) -> None:
    check(case, token)


# --- the documented divergences, each on its own: PyJWT accepts, we refuse ------------

SECRET = b"0123456789abcdef0123456789abcdef"


def _signed(payload: bytes, header: bytes = b'{"alg":"HS256","typ":"JWT"}') -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    return f"{signing_input}.{hs256(signing_input, SECRET)}"


def _pyjwt_accepts(token: str) -> bool:
    FrozenClockPyJWT(NOW).decode(token, SECRET, algorithms=["HS256"], options=OPTIONS)
    return True


def _our_reason(token: str, **options: Any) -> str:
    with pytest.raises(Refusal) as caught:
        HmacVerifier([SECRET], **options).verify(BODY, token, now=NOW)
    return caught.value.reason


GOOD_CLAIMS = {"checksum_sha256": SHA256, "exp": NOW + 60, "iat": NOW}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": str(NOW + 60)}, "missing_claim"),
        ({"iat": True}, "missing_claim"),
        ({"checksum_sha256": None}, "missing_claim"),
        ({"checksum_sha256": "0" * 64}, "checksum_mismatch"),
    ],
)
def test_divergence_claim_rules_refuse_what_pyjwt_accepts(
    changes: dict[str, Any], reason: str
) -> None:
    token = _signed(json.dumps({**GOOD_CLAIMS, **changes}).encode())
    assert _pyjwt_accepts(token)
    assert _our_reason(token) == reason


def test_divergence_sha1_only_token_is_refused_when_sha1_is_not_allowed() -> None:
    token = _signed(json.dumps({"checksum": SHA1, "exp": NOW + 60, "iat": NOW}).encode())
    assert _pyjwt_accepts(token)
    assert _our_reason(token, allow_sha1=False) == "sha1_not_allowed"


@pytest.mark.parametrize(
    "payload",
    [
        json.dumps(GOOD_CLAIMS).encode("utf-16"),
        json.dumps(GOOD_CLAIMS).encode("utf-32-le"),
        b"\xef\xbb\xbf" + json.dumps(GOOD_CLAIMS).encode(),
        raw_json([*GOOD_CLAIMS.items(), ("x", float("nan"))]),
        raw_json([*GOOD_CLAIMS.items(), ("x", float("inf"))]),
        raw_json(list(GOOD_CLAIMS.items())).replace(b"}", b',"x":1e400}'),
        raw_json(list(GOOD_CLAIMS.items())).replace(b"}", b',"x":"\\ud800"}'),
    ],
    ids=["utf-16", "utf-32", "bom", "nan", "infinity", "overflow", "lone-surrogate"],
)
def test_divergence_json_that_is_not_rfc8259_utf8_is_malformed(payload: bytes) -> None:
    token = _signed(payload)
    assert _pyjwt_accepts(token)
    assert _our_reason(token) == "malformed_token"


def test_divergence_surrogate_escaped_token_is_malformed_where_pyjwt_crashes() -> None:
    token = _signed(json.dumps(GOOD_CLAIMS).encode()) + "\udcff"
    with pytest.raises(UnicodeEncodeError):
        _pyjwt_accepts(token)
    assert _our_reason(token) == "malformed_token"
