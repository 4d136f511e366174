"""channels_api.auth: HS256 channel tokens, bearer headers, constant-time key comparison."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from channels_api import auth
from channels_api.auth import (
    LEEWAY_SECONDS,
    ExpiredToken,
    InvalidToken,
    TokenError,
    WrongChannel,
    api_key_matches,
    bearer_token,
    credentials_match,
    issue_token,
    verify_token,
)
from tests.common import b64url_decode, b64url_json, hand_signed, make_token

SECRET = "unit-secret-0123456789abcdef0123456789abcdef"
OTHER_SECRET = "other-secret-0123456789abcdef0123456789abcd"
CID = "chan-1"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"cid": CID, "iat": now, "exp": now + 3600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def signed(secret: str = SECRET, **overrides: Any) -> str:
    return make_token(CID, secret=secret, **overrides)


# --- issue and verify ------------------------------------------------------------------------


def test_issued_token_verifies_for_its_channel():
    issued = issue_token(CID, SECRET, 60)
    assert verify_token(issued.token, CID, [SECRET])["cid"] == CID


def test_issued_token_claims_are_cid_iat_and_exp_iat_plus_ttl():
    now = 1_700_000_000
    issued = issue_token(CID, SECRET, 90, now=now + 0.7)
    decoded = jwt.decode(issued.token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert decoded == {"cid": CID, "iat": now, "exp": now + 90}
    assert issued.expires_at == now + 90
    assert jwt.get_unverified_header(issued.token)["alg"] == "HS256"


def test_issued_token_iat_is_now():
    before = int(time.time())
    decoded = verify_token(issue_token(CID, SECRET, 60).token, CID, [SECRET])
    assert before <= decoded["iat"] <= int(time.time())
    assert decoded["exp"] == decoded["iat"] + 60


@pytest.mark.parametrize("channel_id", [CID, "tést", "\U0001f680-rocket", "a%2Fb?c", "x" * 128])
def test_browser_reads_channel_id_from_token_payload(channel_id):
    # What JSON.parse(atob(token.split(".")[1])).cid does: atob on the base64url middle part.
    token = issue_token(channel_id, SECRET, 60).token
    payload = token.split(".")[1]
    assert "=" not in payload
    assert json.loads(b64url_decode(payload))["cid"] == channel_id


# --- attacks and bad tokens: all InvalidToken (401) --------------------------------------------


def test_alg_none_token_is_refused():
    token = hand_signed({"alg": "none", "typ": "JWT"}, claims(), None)
    with pytest.raises(InvalidToken):
        verify_token(token, CID, [SECRET])


@pytest.mark.parametrize("alg", ["None", "NONE", "nOnE"])
def test_alg_none_spelling_variants_are_refused(alg):
    token = hand_signed({"alg": alg, "typ": "JWT"}, claims(), None)
    with pytest.raises(InvalidToken):
        verify_token(token, CID, [SECRET])


def test_alg_none_token_with_a_valid_hs256_signature_is_refused():
    token = hand_signed({"alg": "none", "typ": "JWT"}, claims(), SECRET.encode())
    with pytest.raises(InvalidToken):
        verify_token(token, CID, [SECRET])


@pytest.fixture(scope="module")
def rsa_public_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_rs256_header_is_refused():
    token = hand_signed({"alg": "RS256", "typ": "JWT"}, claims(), SECRET.encode())
    with pytest.raises(InvalidToken):
        verify_token(token, CID, [SECRET])


def test_hs256_signed_with_an_rsa_public_key_is_refused(rsa_public_pem):
    # Algorithm confusion: the public key used as the HMAC secret.
    token = hand_signed({"alg": "HS256", "typ": "JWT"}, claims(), rsa_public_pem)
    with pytest.raises(InvalidToken):
        verify_token(token, CID, [SECRET])


def test_rs256_header_signed_hmac_with_public_key_is_refused_even_if_it_is_a_configured_secret(rsa_public_pem):
    token = hand_signed({"alg": "RS256", "typ": "JWT"}, claims(), rsa_public_pem)
    with pytest.raises(InvalidToken):
        verify_token(token, CID, [rsa_public_pem.decode()])


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_are_refused(alg):
    token = jwt.encode(claims(), SECRET, algorithm=alg)
    with pytest.raises(InvalidToken):
        verify_token(token, CID, [SECRET])


def test_tampered_payload_is_refused():
    header, _, signature = signed().split(".")
    forged = f"{header}.{b64url_json(claims(cid='someone-else'))}.{signature}"
    with pytest.raises(InvalidToken):
        verify_token(forged, "someone-else", [SECRET])


def test_tampered_expiry_is_refused():
    header, _, signature = signed().split(".")
    forged = f"{header}.{b64url_json(claims(exp=int(time.time()) + 10**8))}.{signature}"
    with pytest.raises(InvalidToken):
        verify_token(forged, CID, [SECRET])


def test_wrong_secret_is_refused():
    with pytest.raises(InvalidToken):
        verify_token(signed(OTHER_SECRET), CID, [SECRET])


def test_wrong_secret_for_another_channel_is_invalid_not_wrong_channel():
    # Only a correctly signed token may learn it is for another channel (403 vs 401).
    with pytest.raises(InvalidToken):
        verify_token(signed(OTHER_SECRET, cid="other"), CID, [SECRET])


def test_token_expired_beyond_leeway_is_refused_as_expired():
    now = int(time.time())
    with pytest.raises(ExpiredToken, match="expired"):
        verify_token(signed(iat=now - 100, exp=now - LEEWAY_SECONDS - 5), CID, [SECRET])


def test_a_cached_token_is_refused_as_expired_once_its_expiry_passes(monkeypatch):
    now = int(time.time())
    token = signed(iat=now, exp=now + 60)
    assert verify_token(token, CID, [SECRET])["cid"] == CID  # verified once, now cached
    later = now + 60 + LEEWAY_SECONDS + 1
    monkeypatch.setattr(auth, "time", type("Clock", (), {"time": staticmethod(lambda: later)}))
    hits = auth._decode_verified.cache_info().hits
    with pytest.raises(ExpiredToken):
        verify_token(token, CID, [SECRET])
    assert auth._decode_verified.cache_info().hits == hits + 1, "the second use did not come from the cache"


def test_an_expired_token_with_a_wrong_signature_is_invalid_not_expired():
    # Only a correctly signed token may learn that it expired.
    now = int(time.time())
    with pytest.raises(InvalidToken) as info:
        verify_token(signed(OTHER_SECRET, iat=now - 100, exp=now - 60), CID, [SECRET])
    assert not isinstance(info.value, ExpiredToken)


def test_token_expired_within_leeway_is_accepted():
    now = int(time.time())
    assert verify_token(signed(iat=now - 100, exp=now - 2), CID, [SECRET])["cid"] == CID


def test_leeway_is_a_few_seconds():
    assert 0 < LEEWAY_SECONDS <= 10


def test_token_not_yet_valid_nbf_is_refused():
    now = int(time.time())
    with pytest.raises(InvalidToken):
        verify_token(signed(nbf=now + 600), CID, [SECRET])


def test_token_issued_in_the_future_beyond_leeway_is_refused():
    now = int(time.time())
    with pytest.raises(InvalidToken):
        verify_token(signed(iat=now + 600, exp=now + 4000), CID, [SECRET])


def test_token_issued_in_the_future_within_leeway_is_accepted():
    now = int(time.time())
    assert verify_token(signed(iat=now + 2), CID, [SECRET])["cid"] == CID


@pytest.mark.parametrize("missing", ["cid", "exp", "iat"])
def test_token_missing_a_required_claim_is_refused(missing):
    token = jwt.encode({k: v for k, v in claims().items() if k != missing}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        verify_token(token, CID, [SECRET])


@pytest.mark.parametrize("cid", [123, None, ["chan-1"], {"id": "chan-1"}, True])
def test_non_string_cid_is_refused(cid):
    token = jwt.encode({**claims(), "cid": cid}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        verify_token(token, CID, [SECRET])


@pytest.mark.parametrize("exp", ["soon", None, [1], {"t": 1}])
def test_malformed_expiry_is_refused(exp):
    token = hand_signed({"alg": "HS256", "typ": "JWT"}, {**claims(), "exp": exp}, SECRET.encode())
    with pytest.raises(InvalidToken):
        verify_token(token, CID, [SECRET])


def test_hundred_kilobyte_token_is_refused():
    token = jwt.encode({**claims(), "pad": "x" * 100_000}, SECRET, algorithm="HS256")
    assert len(token) > 100_000
    with pytest.raises(InvalidToken):
        verify_token(token, CID, [SECRET])


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b.c",
        "...",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9.e30",
        "eyJhbGciOiJIUzI1NiJ9.@@@.xyz",
        "\u00e9\u00e9.\u00e9.\u00e9",
        "Bearer x.y.z",
    ],
)
def test_garbage_token_is_refused(token):
    with pytest.raises(InvalidToken):
        verify_token(token, CID, [SECRET])


def test_no_secrets_refuses_every_token():
    with pytest.raises(InvalidToken):
        verify_token(signed(), CID, [])


# --- another channel: WrongChannel (403) --------------------------------------------------------


def test_valid_token_for_another_channel_is_wrong_channel():
    with pytest.raises(WrongChannel):
        verify_token(issue_token("other", SECRET, 60).token, CID, [SECRET])


def test_wrong_channel_and_invalid_token_are_distinct_token_errors():
    assert issubclass(WrongChannel, TokenError)
    assert issubclass(InvalidToken, TokenError)
    assert not issubclass(WrongChannel, InvalidToken)
    assert not issubclass(InvalidToken, WrongChannel)


@pytest.mark.parametrize("other", ["chan-1 ", "Chan-1", "chan-", "chan-1\x00", "chan\u20111"])
def test_channel_ids_must_match_exactly(other):
    with pytest.raises(WrongChannel):
        verify_token(issue_token(CID, SECRET, 60).token, other, [SECRET])


# --- secret rotation ---------------------------------------------------------------------------


def test_token_signed_with_previous_secret_verifies_while_it_is_listed():
    token = issue_token(CID, OTHER_SECRET, 60).token
    assert verify_token(token, CID, [SECRET, OTHER_SECRET])["cid"] == CID


def test_token_signed_with_dropped_secret_is_refused():
    token = issue_token(CID, OTHER_SECRET, 60).token
    with pytest.raises(InvalidToken):
        verify_token(token, CID, [SECRET, "yet-another-secret-0123456789abcdef"])


def test_expired_token_signed_with_previous_secret_is_refused():
    now = int(time.time())
    with pytest.raises(ExpiredToken):
        verify_token(signed(OTHER_SECRET, iat=now - 100, exp=now - 60), CID, [SECRET, OTHER_SECRET])


def test_token_for_another_channel_signed_with_previous_secret_is_wrong_channel():
    with pytest.raises(WrongChannel):
        verify_token(issue_token("other", OTHER_SECRET, 60).token, CID, [SECRET, OTHER_SECRET])


# --- Authorization: Bearer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("BeArEr abc", "abc"),
        ("Bearer   abc", "abc"),
        ("  Bearer abc  ", "abc"),
        ("Basic dXNlcjpwYXNz", None),
        ("Token abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Bearer    ", None),
        ("Bearerabc", None),
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header, expected):
    assert bearer_token(header) == expected


# --- API keys and credentials -------------------------------------------------------------------


def test_api_key_matches_configured_key():
    assert api_key_matches("key-1", ["key-1"]) is True


@pytest.mark.parametrize("presented", ["key-2", "key-1 ", "KEY-1", "key-", "key-11", "k"])
def test_api_key_mismatch(presented):
    assert api_key_matches(presented, ["key-1"]) is False


@pytest.mark.parametrize("presented", [None, ""])
def test_missing_api_key_never_matches(presented):
    assert api_key_matches(presented, ["key-1"]) is False
    assert api_key_matches(presented, [""]) is False


def test_api_key_matches_any_one_of_several_keys():
    keys = ["first-key", "second-key", "third-key"]
    assert all(api_key_matches(key, keys) for key in keys)
    assert api_key_matches("fourth-key", keys) is False


def test_no_configured_keys_match_nothing():
    assert api_key_matches("key-1", []) is False


@pytest.mark.parametrize("presented", ["caf\u00e9", "\u00ff\u00fe", "\u20ac", "\U0001f680", "\ud800", "key-1\u00e9"])
def test_non_ascii_api_key_does_not_crash_and_does_not_match(presented):
    assert api_key_matches(presented, ["key-1", "caf-key"]) is False


def test_non_latin1_api_key_does_not_match_a_question_mark_key():
    # Characters Django could never decode from a header must not turn into "?" and match.
    assert api_key_matches("\u20ac", ["?"]) is False
    assert api_key_matches("a\U0001f680b", ["a?b"]) is False


def test_utf8_bytes_of_header_decoded_as_latin1_compare_as_sent():
    # Header values reach Django decoded as latin-1: the key's UTF-8 bytes, one char each.
    assert api_key_matches("k\u00c3\u00a9y", ["k\u00e9y"]) is True


def test_credentials_match():
    assert credentials_match("pw", "pw") is True
    assert credentials_match("pw", "PW") is False
    assert credentials_match("", "pw") is False
    assert credentials_match("pw ", "pw") is False
    assert credentials_match("p\u00e4ss", "p\u00e4ss") is True
    assert credentials_match("p\u00e4ss", "pass") is False
