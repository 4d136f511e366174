"""Channel tokens (HS256 JWTs) and API keys: issuing, verifying, comparing in constant time.

Every credential grants a set of actions on a channel: ``subscribe``, ``publish``,
``info`` and ``close`` for a token (``create`` exists only for API keys). A token without
a ``scope`` claim grants all four; ``"scope": "subscribe"`` only ``subscribe``; any other
scope value is refused as an invalid token (401), so a token minted for a purpose this
version does not know never grants more than its issuer meant. An API key of
``channel.api_keys`` grants every action, a named key of ``channel.keys`` its ``scopes``.
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
    "InvalidToken",
    "IssuedToken",
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
    "verify_token",
]

ALGORITHM = "HS256"
LEEWAY_SECONDS = 5
MAX_TOKEN_LENGTH = 4096
"""Longer tokens are refused before any parsing: ours are about 200 characters."""

ACTIONS = frozenset({"subscribe", "publish", "info", "close"})
"""What a channel token may be allowed to do with its channel."""
API_KEY_ACTIONS = ("create", "publish", "info", "close")
"""The scopes an API key may have, in documentation order: API keys never subscribe."""
SUBSCRIBE_SCOPE = "subscribe"
"""The ``scope`` claim of a token that may only subscribe (the create response's ``subscribeToken``)."""
SUBPROTOCOL = "webchannel"
"""The WebSocket subprotocol the server selects when a client offers it."""
BEARER_SUBPROTOCOL_PREFIX = "webchannel.bearer."
"""A browser may offer its token as the subprotocol ``webchannel.bearer.<token>``, beside ``webchannel``."""
_TOKEN_SCOPES: dict[str | None, frozenset[str]] = {None: ACTIONS, SUBSCRIBE_SCOPE: frozenset({"subscribe"})}
"""Actions each known ``scope`` claim grants; no claim grants every action."""


@dataclass(frozen=True)
class IssuedToken:
    """A signed token and its expiry (Unix seconds)."""

    token: str = field(repr=False)
    expires_at: int


def issue_token(
    channel_id: str, secret: str, ttl: int, now: float | None = None, *, scope: str | None = None
) -> IssuedToken:
    """Sign a token for ``channel_id``, valid ``ttl`` s: every action, or only those of ``scope``."""
    if scope not in _TOKEN_SCOPES:
        raise ValueError(f"unknown token scope {scope!r}")
    issued_at = int(time.time() if now is None else now)
    expires_at = issued_at + ttl
    claims: dict[str, Any] = {"cid": channel_id, "iat": issued_at, "exp": expires_at}
    if scope is not None:
        claims["scope"] = scope
    return IssuedToken(jwt.encode(claims, secret, algorithm=ALGORITHM), expires_at)


def narrowed_token(token: str, secret: str, scope: str) -> str:
    """``token`` (just issued with ``secret``) re-signed with the same claims plus ``scope``:
    the same channel, issue time and expiry, fewer rights."""
    if scope not in _TOKEN_SCOPES or scope is None:
        raise ValueError(f"unknown token scope {scope!r}")
    claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"verify_exp": False})
    return jwt.encode({**claims, "scope": scope}, secret, algorithm=ALGORITHM)


def verify_token(token: str, channel_id: str, secrets: Sequence[str]) -> dict[str, Any]:
    """Return the claims if ``token`` is valid for ``channel_id`` under one of ``secrets``.

    Only HS256 is accepted, so ``alg: none`` and RS/HS confusion fail like a bad signature.
    A token whose ``scope`` claim is not one this version knows is invalid. Whether the
    token may do a particular thing is :func:`authorize`'s question.
    """
    return _verified(token, channel_id, secrets)[0]


def authorize(token: str | None, channel_id: str, action: str, secrets: Sequence[str] | None = None) -> dict[str, Any]:
    """Return the claims if ``token`` is valid for ``channel_id`` and allows ``action``.

    ``action`` is one of :data:`ACTIONS`; ``secrets`` default to the configured ones (the
    signing secret, then the previous ones). Raises :class:`InvalidToken` (401),
    :class:`WrongChannel` (403) or :class:`ScopeDenied` (403). The scope check of a token
    seen before is one set lookup: its allowed actions are cached with its verification.
    """
    if secrets is None:
        from django.conf import settings

        secrets = settings.WEBCHANNEL.secret_keys
    claims, allowed = _verified(token or "", channel_id, secrets)
    if action not in allowed:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        raise ScopeDenied(f"this token may only {' and '.join(sorted(allowed))}")
    return claims


def _verified(token: str, channel_id: str, secrets: Sequence[str]) -> tuple[dict[str, Any], frozenset[str]]:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("missing or oversized token")
    claims, allowed = _decode_verified(token, tuple(secrets))
    # A cached token was valid when first seen; its expiry still has to be checked each time.
    if int(claims["exp"]) + LEEWAY_SECONDS < time.time():
        raise ExpiredToken("token expired")
    if claims["cid"] != channel_id:
        raise WrongChannel("token is for another channel")
    return claims, allowed


@functools.lru_cache(maxsize=4096)
def _decode_verified(token: str, secrets: tuple[str, ...]) -> tuple[dict[str, Any], frozenset[str]]:
    """PyJWT's full verification and the claims' checks, once per token: publishers reuse
    a token for many messages. Returns the claims and the actions the token allows.

    Only successes are cached (exceptions are not), and callers must not mutate the claims.
    """
    claims = _signed_claims(token, secrets)
    if not isinstance(claims.get("cid"), str):
        raise InvalidToken("token has no channel id")
    scope = claims.get("scope")
    allowed = _TOKEN_SCOPES.get(scope) if scope is None or isinstance(scope, str) else None
    if allowed is None:
        raise InvalidToken("token has an unknown scope")
    return claims, allowed


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
