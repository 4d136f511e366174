"""What every layer of tests shares: the test credentials, channel tokens, base64url and the
problem+json check.

One copy of each, so that a change to the token format or to the error shape is made in one
place. Unit tests pass their own ``secret``; the in-process and end-to-end tests use
:data:`SECRET_KEY`, the one :func:`tests.harness.base_config` and ``tests/settings.py`` configure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Protocol

import jwt

SECRET_KEY = "test-secret-0123456789abcdef0123456789abcdef"
API_KEY = "test-api-key"
PROBLEM_JSON = "application/problem+json"

# --- base64url -------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWTs use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """The bytes of unpadded base64url ``text``."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_json(value: Any) -> str:
    """``value`` as compact JSON in base64url: one JWT header or payload segment."""
    return b64url(json.dumps(value, separators=(",", ":")).encode())


# --- tokens ----------------------------------------------------------------------------------


def make_token(
    channel_id: str,
    *,
    secret: str = SECRET_KEY,
    ttl: int = 3600,
    issued_at: int | None = None,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    """A JWT signed by PyJWT with ``cid``, ``iat`` (default now) and ``exp`` (``iat`` + ``ttl``).

    ``claims`` add or override claims; a claim given as None is left out.
    """
    iat = int(time.time()) if issued_at is None else issued_at
    payload = {"cid": channel_id, "iat": iat, "exp": iat + ttl, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm=algorithm)


def expired_token(channel_id: str, *, secret: str = SECRET_KEY) -> str:
    """A token for ``channel_id`` that expired an hour ago, far beyond any leeway."""
    return make_token(channel_id, secret=secret, issued_at=int(time.time()) - 7200, ttl=3600)


def hand_signed(header: Any, claims: Any, key: bytes | None, digest: Callable[..., Any] = hashlib.sha256) -> str:
    """A JWS built without PyJWT from any JSON header and payload (any ``alg`` claimed),
    HMAC-signed with ``key`` and ``digest``, or with an empty signature when ``key`` is None."""
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    if key is None:
        return f"{signing_input}."
    return f"{signing_input}.{b64url(hmac.new(key, signing_input.encode('ascii'), digest).digest())}"


def alg_none_token(channel_id: str) -> str:
    """An unsigned ``alg: none`` token with otherwise valid claims."""
    now = int(time.time())
    return hand_signed({"alg": "none", "typ": "JWT"}, {"cid": channel_id, "iat": now, "exp": now + 3600}, None)


def token_claims(token: str) -> dict[str, Any]:
    """The payload of ``token``, read without verifying it (as the browser snippet does)."""
    claims = json.loads(b64url_decode(token.split(".")[1]))
    assert isinstance(claims, dict), claims
    return claims


def bearer(token: str) -> dict[str, str]:
    """An ``Authorization: Bearer`` header carrying ``token``."""
    return {"authorization": f"Bearer {token}"}


# --- problem+json ----------------------------------------------------------------------------


class Response(Protocol):
    """What httpx's and Django's test client's responses both have."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> bytes: ...


def assert_problem_parts(
    status: int,
    content_type: str | None,
    body: bytes,
    expected: int | Collection[int] | None = None,
    context: str = "",
) -> dict[str, Any]:
    """An RFC 7807 problem: ``application/problem+json`` whose ``status`` is the HTTP status and
    whose ``title`` is a non-empty string. ``expected`` is the status, or the allowed statuses
    (any when None). Returns the document."""
    about = f"{context}: {status} {body[:300]!r}" if context else f"{status} {body[:300]!r}"
    if expected is not None:
        allowed = {expected} if isinstance(expected, int) else set(expected)
        assert status in allowed, f"expected {sorted(allowed)}, got {about}"
    assert (content_type or "").split(";")[0].strip() == PROBLEM_JSON, f"{content_type!r}, {about}"
    document = json.loads(body)
    assert isinstance(document, dict), about
    assert isinstance(document.get("title"), str), about
    assert document["title"], about
    assert document.get("status") == status, about
    return document


def assert_problem(
    response: Response, expected: int | Collection[int] | None = None, context: str = ""
) -> dict[str, Any]:
    """``response`` (httpx or Django test client) is a problem with status ``expected``; see
    :func:`assert_problem_parts`."""
    return assert_problem_parts(
        response.status_code, response.headers.get("content-type"), response.content, expected, context
    )
