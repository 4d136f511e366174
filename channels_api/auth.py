"""Channel tokens (HS256 JWTs) and API keys: issuing, verifying, comparing in constant time.

Every credential grants a set of actions on a channel: ``subscribe``, ``publish``,
``info`` and ``close`` for a token (``create`` exists only for API keys). A token without
a ``scope`` claim grants all four. Otherwise ``scope`` lists what it grants, as
space-separated actions (``"subscribe publish"``, OAuth style) or as a JSON list of them;
each action at most once, ``subscribe`` always among them. Any other scope value is refused
as an invalid token (401), so a token minted for a purpose this version does not know never
grants more than its issuer meant.

An API key of ``channel.api_keys`` grants every action and mints tokens without a scope. A
named key of ``channel.keys`` grants its ``scopes`` on the ids its ``channels`` prefixes
allow, and the tokens it mints carry ``scope`` (``subscribe`` plus the key's own ``publish``,
``info``, ``close``) and ``key`` (the key's name): such a token works only while a key of
that name is configured (:class:`KeyRing`), within that key's present scopes and prefixes.
"""

from __future__ import annotations

import functools
import hmac
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt

from .exceptions import ExpiredToken, InvalidToken, ScopeDenied, TokenError, WrongChannel

__all__ = [
    "ACTIONS",
    "API_KEY_ACTIONS",
    "BEARER_SUBPROTOCOL_PREFIX",
    "SUBPROTOCOL",
    "SUBSCRIBE_SCOPE",
    "ApiKey",
    "ExpiredToken",
    "Grant",
    "InvalidToken",
    "IssuedToken",
    "KeyRing",
    "ScopeDenied",
    "TokenError",
    "WrongChannel",
    "api_key_matches",
    "authorize",
    "bearer_token",
    "credentials_match",
    "find_api_key",
    "issue_token",
    "narrowed_token",
    "scope_claim",
    "verify_grant",
    "verify_token",
]

ALGORITHM = "HS256"
LEEWAY_SECONDS = 5
MAX_TOKEN_LENGTH = 4096
"""Longer tokens are refused before any parsing: ours are about 200 characters."""

TOKEN_ACTIONS = ("subscribe", "publish", "info", "close")
"""What a channel token may be allowed to do with its channel, in the order a ``scope`` claim lists them."""
ACTIONS = frozenset(TOKEN_ACTIONS)
API_KEY_ACTIONS = ("create", "publish", "info", "close")
"""The scopes an API key may have, in documentation order: API keys never subscribe."""
SUBSCRIBE_SCOPE = "subscribe"
"""The ``scope`` claim of a token that may only subscribe (the create response's ``subscribeToken``)."""
SUBPROTOCOL = "webchannel"
"""The WebSocket subprotocol the server selects when a client offers it."""
BEARER_SUBPROTOCOL_PREFIX = "webchannel.bearer."
"""A browser may offer its token as the subprotocol ``webchannel.bearer.<token>``, beside ``webchannel``."""


def scope_claim(actions: Iterable[str]) -> str:
    """The ``scope`` claim of a token allowed ``actions`` (which include ``subscribe``):
    space-separated, in the fixed order of :data:`TOKEN_ACTIONS`, e.g. ``"subscribe publish"``."""
    wanted = set(actions)
    if not wanted <= ACTIONS or SUBSCRIBE_SCOPE not in wanted:
        raise ValueError(f"unknown token scope {sorted(wanted)!r}: expected subscribe and any of publish, info, close")
    return " ".join(action for action in TOKEN_ACTIONS if action in wanted)


def _scope_actions(scope: Any) -> frozenset[str] | None:
    """The actions a ``scope`` claim grants (None, no claim: every action), or None when the
    value is neither space-separated actions nor a list of them, each once, with ``subscribe``."""
    if scope is None:
        return ACTIONS
    if isinstance(scope, str):
        items: list[Any] = scope.split(" ")  # "" and doubled spaces give an empty item: no action
    elif isinstance(scope, list):
        items = scope
    else:
        return None
    if not all(isinstance(item, str) and item in ACTIONS for item in items):
        return None
    granted = frozenset(items)
    if len(granted) != len(items) or SUBSCRIBE_SCOPE not in granted:
        return None
    return granted


@dataclass(frozen=True)
class IssuedToken:
    """A signed token and its expiry (Unix seconds)."""

    token: str = field(repr=False)
    expires_at: int


def issue_token(
    channel_id: str,
    secret: str,
    ttl: int,
    now: float | None = None,
    *,
    scope: str | None = None,
    key: str | None = None,
) -> IssuedToken:
    """Sign a token for ``channel_id``, valid ``ttl`` s: every action, or only those of ``scope``;
    ``key`` names the named API key that asked for it (its ``key`` claim)."""
    if _scope_actions(scope) is None:
        raise ValueError(f"unknown token scope {scope!r}")
    issued_at = int(time.time() if now is None else now)
    expires_at = issued_at + ttl
    claims: dict[str, Any] = {"cid": channel_id, "iat": issued_at, "exp": expires_at}
    if scope is not None:
        claims["scope"] = scope
    if key is not None:
        claims["key"] = key
    return IssuedToken(jwt.encode(claims, secret, algorithm=ALGORITHM), expires_at)


def narrowed_token(token: str, secret: str, scope: str) -> str:
    """``token`` (just issued with ``secret``) re-signed with the same claims plus ``scope``:
    the same channel, issue time, expiry and key, fewer rights."""
    if not scope or _scope_actions(scope) is None:
        raise ValueError(f"unknown token scope {scope!r}")
    claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"verify_exp": False})
    return jwt.encode({**claims, "scope": scope}, secret, algorithm=ALGORITHM)


@dataclass(frozen=True)
class Grant:
    """A verified, unexpired token: its claims, the actions its ``scope`` grants, and the
    configured named key that minted it (None for a token of trusted code or ``channel.api_keys``)."""

    claims: dict[str, Any]
    actions: frozenset[str]
    key: ApiKey | None = None

    @property
    def key_name(self) -> str | None:
        """The name the access log shows for the key behind this token, if a named key minted it."""
        return self.key.name if self.key is not None else None

    def check(self, channel_id: str, action: str) -> None:
        """Raise :class:`WrongChannel` or :class:`ScopeDenied` (both 403) unless the token may
        do ``action`` on ``channel_id``: its own claims, and its key as configured now."""
        if self.claims["cid"] != channel_id:
            raise WrongChannel("token is for another channel")
        if self.key is not None and not self.key.allows_channel(channel_id):
            raise WrongChannel("the API key behind this token may no longer use this channel")
        if action not in self.actions or (self.key is not None and action not in self.key.token_actions):
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r}")
            allowed = self.actions & (self.key.token_actions if self.key is not None else ACTIONS)
            raise ScopeDenied(f"this token may only {' and '.join(a for a in TOKEN_ACTIONS if a in allowed)}")


def verify_grant(token: str | None, secrets: Sequence[str], keys: KeyRing | None = None) -> Grant:
    """What ``token`` grants, if it is correctly signed with one of ``secrets`` and unexpired.

    Only HS256 is accepted, so ``alg: none`` and RS/HS confusion fail like a bad signature.
    A token whose ``scope`` claim is not valid, or whose ``key`` claim names no key of
    ``keys`` (every named key is gone without ``keys``), is an :class:`InvalidToken` (401).
    The signature and claims of a token seen before are not checked again: they are cached,
    with the actions the token allows; the key is looked up each time, so it can go away.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("missing or oversized token")
    grant = _decode_verified(token, tuple(secrets))
    # A cached token was valid when first seen; its expiry still has to be checked each time.
    if int(grant.claims["exp"]) + LEEWAY_SECONDS < time.time():
        raise ExpiredToken("token expired")
    name = grant.claims.get("key")
    if name is None:
        return grant
    key = keys.live(name) if keys is not None else None
    if key is None:
        raise InvalidToken("the API key that issued this token is no longer configured")
    return Grant(grant.claims, grant.actions, key)


def verify_token(token: str, channel_id: str, secrets: Sequence[str], keys: KeyRing | None = None) -> dict[str, Any]:
    """Return the claims if ``token`` is valid for ``channel_id`` under one of ``secrets``.

    Whether the token may do a particular thing is :func:`authorize`'s question.
    """
    grant = verify_grant(token, secrets, keys)
    if grant.claims["cid"] != channel_id:
        raise WrongChannel("token is for another channel")
    return grant.claims


def authorize(
    token: str | None, channel_id: str, action: str, secrets: Sequence[str], keys: KeyRing | None = None
) -> dict[str, Any]:
    """Return the claims if ``token`` is valid for ``channel_id`` and allows ``action``.

    ``action`` is one of :data:`ACTIONS`; ``secrets`` verify tokens (the signing secret, then
    the previous ones), ``keys`` are the configured API keys (a token a named key minted is
    valid only while that key is). Raises :class:`InvalidToken` (401), :class:`WrongChannel`
    (403) or :class:`ScopeDenied` (403). The scope check of a token seen before is a set
    lookup: its allowed actions are cached with its verification.
    """
    grant = verify_grant(token, secrets, keys)
    grant.check(channel_id, action)
    return grant.claims


@functools.lru_cache(maxsize=4096)
def _decode_verified(token: str, secrets: tuple[str, ...]) -> Grant:
    """PyJWT's full verification and the claims' checks, once per token: publishers reuse
    a token for many messages. Returns the claims and the actions the token allows (the
    key, if the token names one, is looked up by the caller each time).

    Only successes are cached (exceptions are not), and callers must not mutate the claims.
    """
    claims = _signed_claims(token, secrets)
    if not isinstance(claims.get("cid"), str):
        raise InvalidToken("token has no channel id")
    if "key" in claims and not isinstance(claims["key"], str):
        raise InvalidToken("token has a malformed key name")
    allowed = _scope_actions(claims.get("scope"))
    if allowed is None:
        raise InvalidToken("token has an unknown scope")
    return Grant(claims, allowed)


def _signed_claims(token: str, secrets: tuple[str, ...]) -> dict[str, Any]:
    for secret in secrets:
        try:
            return jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                leeway=LEEWAY_SECONDS,
                options={"require": ["cid", "exp", "iat"]},
            )
        except jwt.InvalidSignatureError:
            continue  # maybe signed with a previous secret
        except jwt.ExpiredSignatureError:
            raise ExpiredToken("token expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("token not yet valid") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidToken("malformed token") from None
    raise InvalidToken("bad token signature")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


API_KEYS_LABEL = "api_keys"
"""The name every key of the plain ``channel.api_keys`` list goes by in logs and metrics."""


@dataclass(frozen=True)
class ApiKey:
    """An API key with the name logs and metrics show for it, the actions it may take, the
    channel-id prefixes it may act on (empty: every id) and its publish rate (None: unlimited)."""

    name: str
    key: str = field(repr=False)
    scopes: frozenset[str]
    channels: tuple[str, ...] = ()
    max_publish_rate: float | None = None

    def allows_channel(self, channel_id: str) -> bool:
        """Whether ``channel_id`` starts with one of the key's prefixes (always, without prefixes)."""
        return not self.channels or channel_id.startswith(self.channels)

    @property
    def named(self) -> bool:
        """A key of ``channel.keys`` (limited, and named in the tokens it mints), not of ``channel.api_keys``."""
        return self.name != API_KEYS_LABEL

    @functools.cached_property
    def token_actions(self) -> frozenset[str]:
        """What a token this key mints may do: subscribe, and the key's own publish, info and close."""
        if not self.named:
            return ACTIONS
        return frozenset({SUBSCRIBE_SCOPE}) | (self.scopes & ACTIONS)

    @property
    def token_scope(self) -> str | None:
        """The ``scope`` claim of the tokens this key mints: None (every action) for a key of
        ``channel.api_keys``, else :attr:`token_actions` in claim form, e.g. ``"subscribe publish"``."""
        return scope_claim(self.token_actions) if self.named else None


class KeyRing:
    """Every API key the server accepts: found by the key a client presents, or by the name a
    token carries. The one place that answers whether a named key is still live, so a token
    minted by a key that is gone (removed from the configuration) stops working."""

    def __init__(self, entries: Iterable[ApiKey]) -> None:
        self.entries = tuple(entries)
        self._named = {entry.name: entry for entry in self.entries if entry.named}

    def find(self, presented: str | None) -> ApiKey | None:
        """The entry whose key equals ``presented`` (compared in constant time with every key), else None."""
        return find_api_key(presented, self.entries)

    def live(self, name: str) -> ApiKey | None:
        """The named key called ``name`` as configured now, or None when there is none (any more)."""
        return self._named.get(name)


def api_key_matches(presented: str | None, keys: Iterable[str]) -> bool:
    """True if ``presented`` equals one of ``keys``; compares with every key, in constant time."""
    entries = [ApiKey(API_KEYS_LABEL, key, frozenset(API_KEY_ACTIONS)) for key in keys]
    return find_api_key(presented, entries) is not None


def find_api_key(presented: str | None, entries: Iterable[ApiKey]) -> ApiKey | None:
    """The entry whose key equals ``presented``, else None.

    Compares with every entry in constant time, whether or not one matched already, so
    the time taken says nothing about which key (or how much of one) was right.
    """
    if not presented:
        return None
    # Header values reach Django decoded as latin-1; back to the bytes the client sent.
    try:
        candidate = presented.encode("latin-1")
    except UnicodeEncodeError:
        return None
    found = None
    for entry in entries:
        if hmac.compare_digest(candidate, entry.key.encode("utf-8")):
            found = entry
    return found


def credentials_match(presented: str, expected: str) -> bool:
    """Constant-time equality for a secret the client presents (e.g. a metrics password)."""
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))
