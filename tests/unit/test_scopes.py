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
    KeyRing,
    ScopeDenied,
    WrongChannel,
    authorize,
    find_api_key,
    issue_token,
    narrowed_token,
    scope_claim,
    verify_grant,
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


INVALID_SCOPES = [
    "publish",  # without subscribe
    "admin",
    "",
    "Subscribe",
    "subscribe admin",
    "subscribe subscribe",
    "subscribe  publish",  # an empty item between two spaces
    " subscribe",
    "subscribe publish ",
    "subscribe,publish",
    "subscribe\tpublish",
    ["publish"],
    ["subscribe", "subscribe"],
    ["subscribe", 1],
    ["subscribe", ["publish"]],
    ["subscribe publish"],
    [],
    1,
    True,
    0,
    {"a": 1},
    {"subscribe": True},
]


@pytest.mark.parametrize("scope", INVALID_SCOPES)
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
"""Keys compared by :func:`find_api_key` (not loaded from a configuration: no minimum length here)."""


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


# --- scope claims of several actions, and tokens minted by named keys -------------------------

CI = ApiKey("ci-worker", "ci-key-0001", frozenset({"create", "publish"}))
CREATOR = ApiKey("creator", "creator-key-1", frozenset({"create"}))
TENANT = ApiKey("tenant-a", "tenant-key-1", frozenset({"create", "publish", "info", "close"}), ("tenant-a:",))
RING = KeyRing((ApiKey("api_keys", "full-key-1", frozenset(API_KEY_ACTIONS)), CI, CREATOR, TENANT))


@pytest.mark.parametrize(
    ("scope", "granted"),
    [
        ("subscribe", {"subscribe"}),
        ("subscribe publish", {"subscribe", "publish"}),
        ("publish subscribe", {"subscribe", "publish"}),  # any order
        ("close info subscribe publish", ACTIONS),
        (["subscribe"], {"subscribe"}),
        (["info", "subscribe"], {"subscribe", "info"}),
    ],
)
def test_a_scope_grants_exactly_the_actions_it_lists(scope, granted):
    token = make_token("ch", secret=SECRET, scope=scope)
    for action in ACTIONS:
        if action in granted:
            authorize(token, "ch", action, SECRETS, RING)
        else:
            with pytest.raises(ScopeDenied, match="this token may only subscribe"):
                authorize(token, "ch", action, SECRETS, RING)


@pytest.mark.parametrize(
    ("actions", "claim"),
    [
        ({"subscribe"}, "subscribe"),
        ({"publish", "subscribe"}, "subscribe publish"),
        ({"close", "subscribe", "info"}, "subscribe info close"),
        (ACTIONS, "subscribe publish info close"),
    ],
)
def test_scope_claim_lists_actions_in_a_fixed_order(actions, claim):
    assert scope_claim(actions) == claim


@pytest.mark.parametrize("actions", [set(), {"publish"}, {"subscribe", "create"}, {"subscribe", "admin"}])
def test_scope_claim_refuses_a_set_without_subscribe_or_with_an_unknown_action(actions):
    with pytest.raises(ValueError, match="unknown token scope"):
        scope_claim(actions)


@pytest.mark.parametrize(
    ("scopes", "claim"),
    [
        ({"create"}, "subscribe"),
        ({"create", "publish"}, "subscribe publish"),
        ({"create", "close", "publish"}, "subscribe publish close"),
        ({"info"}, "subscribe info"),
        (set(API_KEY_ACTIONS), "subscribe publish info close"),
    ],
)
def test_a_named_key_mints_the_scope_of_its_own_actions_plus_subscribe(scopes, claim):
    assert ApiKey("k", "some-key-1", frozenset(scopes)).token_scope == claim


def test_a_key_of_the_plain_list_mints_tokens_without_scope():
    entry = ApiKey("api_keys", "full-key-1", frozenset(API_KEY_ACTIONS))
    assert not entry.named
    assert entry.token_scope is None
    assert entry.token_actions == ACTIONS


def test_issue_token_names_the_key_and_narrowed_token_keeps_it():
    token = issue_token("ch", SECRET, 60, scope="subscribe publish", key="ci-worker").token
    assert token_claims(token)["key"] == "ci-worker"
    assert token_claims(token)["scope"] == "subscribe publish"
    narrow = narrowed_token(token, SECRET, SUBSCRIBE_SCOPE)
    assert token_claims(narrow) == {**token_claims(token), "scope": "subscribe"}


def test_a_token_of_a_configured_key_is_granted_with_that_key():
    token = issue_token("ch", SECRET, 60, scope=CI.token_scope, key=CI.name).token
    grant = verify_grant(token, SECRETS, RING)
    assert (grant.key, grant.key_name, grant.actions) == (CI, "ci-worker", {"subscribe", "publish"})
    grant.check("ch", "publish")
    with pytest.raises(ScopeDenied, match="this token may only subscribe and publish"):
        grant.check("ch", "close")


def test_a_token_without_key_claim_has_no_key():
    grant = verify_grant(issue_token("ch", SECRET, 60).token, SECRETS, RING)
    assert (grant.key, grant.key_name, grant.actions) == (None, None, ACTIONS)


@pytest.mark.parametrize("name", ["gone", "api_keys", "CI-WORKER", ""])
def test_a_token_whose_key_is_not_configured_is_invalid_for_every_action(name):
    token = make_token("ch", secret=SECRET, scope="subscribe publish", key=name)
    for action in ACTIONS:
        with pytest.raises(InvalidToken, match="no longer configured"):
            authorize(token, "ch", action, SECRETS, RING)


@pytest.mark.parametrize("name", [5, ["ci-worker"], {"name": "ci-worker"}, True])
def test_a_key_claim_that_is_not_a_string_is_invalid(name):
    token = make_token("ch", secret=SECRET, key=name)
    with pytest.raises(InvalidToken, match="malformed key name"):
        verify_grant(token, SECRETS, RING)


def test_without_a_key_ring_every_named_key_is_gone():
    token = make_token("ch", secret=SECRET, scope="subscribe", key="ci-worker")
    with pytest.raises(InvalidToken, match="no longer configured"):
        verify_grant(token, SECRETS)


def test_a_removed_key_retires_its_tokens_though_their_verification_is_cached():
    token = issue_token("ch", SECRET, 60, scope=CI.token_scope, key=CI.name).token
    authorize(token, "ch", "publish", SECRETS, RING)
    without_ci = KeyRing(entry for entry in RING.entries if entry.name != "ci-worker")
    with pytest.raises(InvalidToken, match="no longer configured"):
        authorize(token, "ch", "publish", SECRETS, without_ci)
    with pytest.raises(InvalidToken):
        authorize(token, "ch", "subscribe", SECRETS, without_ci)
    info = auth._decode_verified.cache_info()
    assert (info.misses, info.hits) == (1, 2)  # the signature was checked once; the key each time


def test_a_token_never_exceeds_its_key_as_configured_now():
    token = issue_token("tenant-a:1", SECRET, 60, scope="subscribe publish info close", key="tenant-a").token
    authorize(token, "tenant-a:1", "close", SECRETS, RING)
    narrower = ApiKey("tenant-a", "tenant-key-1", frozenset({"create", "publish"}), ("tenant-a:",))
    with pytest.raises(ScopeDenied, match="this token may only subscribe and publish"):
        authorize(token, "tenant-a:1", "close", SECRETS, KeyRing([narrower]))
    moved = ApiKey("tenant-a", "tenant-key-1", TENANT.scopes, ("tenant-b:",))
    with pytest.raises(WrongChannel, match="may no longer use this channel"):
        authorize(token, "tenant-a:1", "subscribe", SECRETS, KeyRing([moved]))


def test_the_cache_keeps_the_actions_of_a_scoped_token():
    token = issue_token("ch", SECRET, 60, scope="subscribe info", key="creator").token
    ring = KeyRing([ApiKey("creator", "creator-key-1", frozenset({"create", "info"}))])
    for _ in range(3):
        authorize(token, "ch", "info", SECRETS, ring)
        with pytest.raises(ScopeDenied):
            authorize(token, "ch", "publish", SECRETS, ring)
    info = auth._decode_verified.cache_info()
    assert (info.currsize, info.misses) == (1, 1)


def test_the_key_ring_finds_keys_by_value_and_named_keys_by_name():
    assert RING.find("ci-key-0001") is CI
    assert RING.find("full-key-1") is RING.entries[0]
    assert RING.find("ci-key-000") is None
    assert RING.live("ci-worker") is CI
    assert RING.live("api_keys") is None  # the plain list's name is no named key
    assert RING.live("nobody") is None
