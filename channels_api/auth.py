"""Channel tokens (HS256 JWTs) and API keys: issuing, verifying, comparing in constant time."""

from __future__ import annotations

import functools
import hmac
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from .exceptions import ExpiredToken, InvalidToken, TokenError, WrongChannel

__all__ = [
    "ExpiredToken",
    "InvalidToken",
    "IssuedToken",
    "TokenError",
    "WrongChannel",
    "api_key_matches",
    "bearer_token",
    "credentials_match",
    "issue_token",
    "verify_token",
]

ALGORITHM = "HS256"
LEEWAY_SECONDS = 5
MAX_TOKEN_LENGTH = 4096
"""Longer tokens are refused before any parsing: ours are about 200 characters."""


@dataclass(frozen=True)
class IssuedToken:
    """A signed token and its expiry (Unix seconds)."""

    token: str
    expires_at: int


def issue_token(channel_id: str, secret: str, ttl: int, now: float | None = None) -> IssuedToken:
    """Sign a token that lets its holder subscribe and publish to ``channel_id`` for ``ttl`` s."""
    issued_at = int(time.time() if now is None else now)
    expires_at = issued_at + ttl
    claims = {"cid": channel_id, "iat": issued_at, "exp": expires_at}
    return IssuedToken(jwt.encode(claims, secret, algorithm=ALGORITHM), expires_at)


def verify_token(token: str, channel_id: str, secrets: Sequence[str]) -> dict[str, Any]:
    """Return the claims if ``token`` is valid for ``channel_id`` under one of ``secrets``.

    Only HS256 is accepted, so ``alg: none`` and RS/HS confusion fail like a bad signature.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("missing or oversized token")
    claims = _decode(token, secrets)
    cid = claims.get("cid")
    if not isinstance(cid, str):
        raise InvalidToken("token has no channel id")
    if cid != channel_id:
        raise WrongChannel("token is for another channel")
    return claims


def _decode(token: str, secrets: Sequence[str]) -> dict[str, Any]:
    claims = _decode_verified(token, tuple(secrets))
    # A cached token was valid when first seen; its expiry still has to be checked each time.
    if int(claims["exp"]) + LEEWAY_SECONDS < time.time():
        raise ExpiredToken("token expired")
    return claims


@functools.lru_cache(maxsize=4096)
def _decode_verified(token: str, secrets: tuple[str, ...]) -> dict[str, Any]:
    """PyJWT's full verification, once per token: publishers reuse a token for many messages.

    Only successes are cached (exceptions are not), and callers must not mutate the claims.
    """
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


def api_key_matches(presented: str | None, keys: Iterable[str]) -> bool:
    """True if ``presented`` equals one of ``keys``; compares with every key, in constant time."""
    if not presented:
        return False
    # Header values reach Django decoded as latin-1; back to the bytes the client sent.
    try:
        candidate = presented.encode("latin-1")
    except UnicodeEncodeError:
        return False
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.encode("utf-8"))
    return matched


def credentials_match(presented: str, expected: str) -> bool:
    """Constant-time equality for a secret the client presents (e.g. a metrics password)."""
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))
