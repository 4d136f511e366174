"""Token scopes and named API keys: what each credential may do, and the verification cache."""

from __future__ import annotations

import pytest

from channels_api import auth
from channels_api.auth import (
    ACTIONS,
    API_KEY_ACTIONS,
    SUBSCRIBE_SCOPE,
    ApiKey,
    ExpiredToken,
    InvalidToken,
    ScopeDenied,
    WrongChannel,
    authorize,
    find_api_key,
    issue_token,
    narrowed_token,
)
from tests.common import make_token, token_claims

SECRET = "scope-secret-0123456789abcdef0123456789abcdef"
SECRETS = (SECRET,)


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts with no verified token remembered."""
    auth._decode_verified.cache_clear()
    yield
    auth._decode_verified.cache_clear()


def test_a_token_without_scope_allows_every_action():
    token = issue_token("ch", SECRET, 60).token
    assert "scope" not in token_claims(token)
    for action in ACTIONS:
        assert authorize(token, "ch", action, SECRETS)["cid"] == "ch"


def test_a_subscribe_token_subscribes_and_nothing_else():
    token = issue_token("ch", SECRET, 60, scope=SUBSCRIBE_SCOPE).token
    assert token_claims(token)["scope"] == "subscribe"
    assert authorize(token, "ch", "subscribe", SECRETS)["scope"] == "subscribe"
    for action in ("publish", "info", "close"):
        with pytest.raises(ScopeDenied, match="this token may only subscribe"):
            authorize(token, "ch", action, SECRETS)


def test_narrowed_token_keeps_cid_iat_and_exp():
    full = issue_token("ch", SECRET, 120, now=1_700_000_000).token
    narrow = narrowed_token(full, SECRET, SUBSCRIBE_SCOPE)
    assert token_claims(narrow) == {**token_claims(full), "scope": "subscribe"}


@pytest.mark.parametrize("scope", ["publish", "admin", "", "Subscribe", ["subscribe"], 1, {"a": 1}])
def test_an_unknown_scope_is_an_invalid_token_for_every_action(scope):
    token = make_token("ch", secret=SECRET, scope=scope)
    for action in ACTIONS:
        with pytest.raises(InvalidToken, match="unknown scope"):
            authorize(token, "ch", action, SECRETS)


def test_a_subscribe_token_is_still_checked_for_channel_signature_and_expiry():
    with pytest.raises(WrongChannel):
        authorize(make_token("other", secret=SECRET, scope="subscribe"), "ch", "subscribe", SECRETS)
    with pytest.raises(InvalidToken):
        authorize(make_token("ch", secret="not-the-secret", scope="subscribe"), "ch", "subscribe", SECRETS)
    expired = make_token("ch", secret=SECRET, scope="subscribe", issued_at=1_000_000, ttl=60)
    with pytest.raises(ExpiredToken):
        authorize(expired, "ch", "subscribe", SECRETS)


def test_a_missing_token_is_invalid():
    for token in (None, ""):
        with pytest.raises(InvalidToken):
            authorize(token, "ch", "subscribe", SECRETS)


def test_the_cache_remembers_what_a_token_allows_not_a_blanket_yes():
    """A subscribe token verified once (cached) is still refused publish; a full token still may."""
    narrow = issue_token("ch", SECRET, 60, scope=SUBSCRIBE_SCOPE).token
    full = issue_token("ch2", SECRET, 60).token
    for _ in range(3):
        authorize(narrow, "ch", "subscribe", SECRETS)
        with pytest.raises(ScopeDenied):
            authorize(narrow, "ch", "publish", SECRETS)
        authorize(full, "ch2", "publish", SECRETS)
    info = auth._decode_verified.cache_info()
    assert info.currsize == 2
    assert info.misses == 2  # one full verification per token, whatever was asked of it


def test_an_unknown_scope_is_refused_every_time_not_cached():
    token = make_token("ch", secret=SECRET, scope="admin")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            authorize(token, "ch", "publish", SECRETS)
    assert auth._decode_verified.cache_info().currsize == 0


def test_an_unknown_action_is_a_programming_error():
    token = make_token("ch", secret=SECRET, scope="subscribe")
    with pytest.raises(ValueError, match="unknown action"):
        authorize(token, "ch", "delete", SECRETS)


def test_issue_token_refuses_an_unknown_scope():
    with pytest.raises(ValueError, match="unknown token scope"):
        issue_token("ch", SECRET, 60, scope="admin")


# --- API keys --------------------------------------------------------------------------------

ENTRIES = (
    ApiKey("api_keys", "full-key", frozenset(API_KEY_ACTIONS)),
    ApiKey("ci-worker", "ci-key", frozenset({"publish"})),
    ApiKey("dashboard", "dash-key", frozenset({"info", "close"})),
)


@pytest.mark.parametrize(
    ("presented", "name"), [("full-key", "api_keys"), ("ci-key", "ci-worker"), ("dash-key", "dashboard")]
)
def test_find_api_key_returns_the_entry_of_the_presented_key(presented, name):
    entry = find_api_key(presented, ENTRIES)
    assert entry is not None
    assert entry.name == name


@pytest.mark.parametrize("presented", [None, "", "ci-ke", "ci-key ", "CI-KEY", "ci-key\u00e9", "\u20ac"])
def test_find_api_key_returns_none_for_anything_else(presented):
    assert find_api_key(presented, ENTRIES) is None


def test_find_api_key_compares_with_every_key(monkeypatch):
    compared = []
    real = auth.hmac.compare_digest

    def counting(a, b):
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    assert find_api_key("full-key", ENTRIES) is ENTRIES[0]  # the first matches, the others are still compared
    assert compared == [b"full-key", b"ci-key", b"dash-key"]
