"""Hostile HTTP input never gets a 5xx or a crash, checked with hypothesis.

Requests go through the whole ASGI application (body-limit middleware, Django, the views)
with scopes built by hand, as an ASGI server would build them: ``raw_path`` is what came on
the wire and ``path`` its percent-decoding (Daphne: ``unquote(raw_path.decode("ascii"))``,
so invalid UTF-8 becomes U+FFFD); a second form puts text no UTF-8 URL can carry (lone
surrogates) straight into ``path``, as a hand-built or ``surrogateescape``-decoding server would.

The properties draw from what Daphne lets through to the application: header values without
NUL, CR or LF, a Content-Length of digits only, an ASCII query string (Twisted and Daphne
answer anything else themselves). What other ASGI servers might pass on beyond that is
checked by the examples at the end of this file.

Statuses allowed beyond the README's API table per endpoint: 404 for an invalid id outside
create (an invalid id may get 400 or 404 there), 413 on any path for a body over 16 KiB (the limit is enforced
before routing), and 200 for a CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import itertools
import json
import re
import time
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import jwt
import pytest
from channels.testing import ApplicationCommunicator
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from tests.common import SECRET_KEY, assert_problem_parts, b64url_json, expired_token, hand_signed, make_token
from tests.harness import API_KEY, timeout
from webchannel_project.asgi import application

pytestmark = pytest.mark.slow

PREFIX = "/webchannel/v1/channels"
CREATE_LIMIT = 16 * 1024
MAX_MESSAGE_SIZE = 524288
LEEWAY = 5

HYPOTHESIS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------------------------
# The channel-id rules, written out again here so the oracle does not trust the code under test.


def follows_id_rules(channel_id: str) -> bool:
    """The channel-id rules: 1-128 characters, no ``/``, no whitespace, no control characters."""
    return 1 <= len(channel_id) <= 128 and not any(
        char == "/" or char.isspace() or unicodedata.category(char) in ("Cc", "Cs") for char in channel_id
    )


# ---------------------------------------------------------------------------------------------
# Tokens


def oracle_verdict(token: str, channel_id: str) -> int:
    """What a publish with ``Authorization: Bearer <token>`` must get: 204, 403 or 401.

    Valid means HS256 under the right secret, with ``cid``, ``exp`` and ``iat``, unexpired and
    not issued or valid only in the future (a few seconds of leeway); 403 is a valid token whose
    ``cid`` names another channel.
    """
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(
            token,
            SECRET_KEY,
            algorithms=["HS256"],
            leeway=LEEWAY,
            options={"require": ["cid", "exp", "iat"]},
        )
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
        return 401
    if header.get("alg") != "HS256" or not isinstance(claims, dict) or not isinstance(claims.get("cid"), str):
        return 401
    return 204 if claims["cid"] == channel_id else 403


def oracle_accepts(token: str, channel_id: str) -> bool:
    """Would a correct server accept ``token`` for ``channel_id``?"""
    return oracle_verdict(token, channel_id) == 204


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def time_claim(now: int) -> st.SearchStrategy[Any]:
    """A value for ``exp``/``iat``/``nbf``: far past or future, numeric-looking text, floats, huge, junk."""
    offsets = st.sampled_from([-(10**6), -3600, -60, 60, 3600, 10**6])
    return st.one_of(
        offsets.map(lambda d: now + d),
        offsets.map(lambda d: float(now + d) + 0.5),
        offsets.map(lambda d: str(now + d)),
        st.sampled_from([10**30, -(10**30), 2**63, 2**64 + 1, 1e308, -1e308, 0, -1, True, False, None, "", "soon"]),
        json_values,
    )


@st.composite
def jwt_claims(draw: st.DrawFn, channel_id: str) -> Any:
    now = int(time.time())
    claims: dict[str, Any] = {}
    cid = draw(
        st.one_of(
            st.just(channel_id),
            st.just(channel_id + "x"),
            st.just(channel_id.upper()),
            st.text(max_size=10),
            json_values,
        )
    )
    for name, value in (
        ("cid", st.just(cid)),
        ("exp", time_claim(now)),
        ("iat", time_claim(now)),
        ("nbf", time_claim(now)),
    ):
        if draw(st.booleans()) or (name != "nbf" and draw(st.integers(0, 3)) > 0):
            claims[name] = draw(value)
    claims.update(draw(st.dictionaries(st.sampled_from(["scope", "sub", "aud", "iss", "jti", "x"]), json_values)))
    # Not always an object: arrays, strings and numbers are valid JSON payloads too.
    return draw(st.one_of(st.just(claims), st.just(claims), st.just(claims), json_values))


@st.composite
def jwt_header(draw: st.DrawFn) -> Any:
    alg = draw(st.sampled_from(["HS256", "HS256", "HS256", "none", "None", "NONE", "HS512", "RS256", "ES256", "hs256"]))
    header: dict[str, Any] = {"alg": draw(st.one_of(st.just(alg), st.just(alg), json_values))}
    if draw(st.booleans()):
        header["typ"] = draw(st.sampled_from(["JWT", "jwt", "JOSE", ""]) | json_values)
    extra = st.dictionaries(
        st.sampled_from(["kid", "crit", "b64", "jku", "x5u", "cty", "zip"]), json_values, max_size=2
    )
    header.update(draw(extra))
    return draw(st.one_of(st.just(header), st.just(header), st.just(header), json_values))


def rsa_like_public_key() -> bytes:
    return (
        b"-----BEGIN PUBLIC KEY-----\nMFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAK0abc0123456789"
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01234567890abcdefghijklmnoCAwEAAQ==\n"
        b"-----END PUBLIC KEY-----\n"
    )


TOKEN_KINDS = [
    "valid",
    "other-channel",
    "expired",
    "future-iat",
    "future-nbf",
    "wrong-secret",
    "alg-none",
    "hs512",
    "rs256-confusion",
    "tampered",
    "crafted",
    "huge",
    "random",
    "api-key",
]
ATTACKS = [kind for kind in TOKEN_KINDS if kind not in ("valid", "other-channel", "tampered", "crafted")]
"""Token kinds that must never be accepted (``tampered`` and ``crafted`` may, rarely, still be good)."""


def tokens(channel_id: str) -> st.SearchStrategy[str]:
    """Every kind of token an attacker (or a confused client) might present for ``channel_id``."""
    return st.sampled_from(TOKEN_KINDS).flatmap(lambda kind: token_of_kind(kind, channel_id))


@st.composite
def token_of_kind(draw: st.DrawFn, kind: str, channel_id: str) -> str:
    now = int(time.time())
    secret = SECRET_KEY.encode()
    if kind == "valid":
        return make_token(channel_id)
    if kind == "other-channel":
        return make_token(channel_id + "-other")
    if kind == "expired":
        return expired_token(channel_id)
    if kind == "future-iat":
        return hand_signed(
            {"alg": "HS256", "typ": "JWT"}, {"cid": channel_id, "iat": now + 3600, "exp": now + 7200}, secret
        )
    if kind == "future-nbf":
        return make_token(channel_id, nbf=now + 3600)
    if kind == "wrong-secret":
        wrong = draw(st.binary(max_size=64))
        return hand_signed({"alg": "HS256", "typ": "JWT"}, {"cid": channel_id, "iat": now, "exp": now + 600}, wrong)
    if kind == "alg-none":
        header = {"alg": draw(st.sampled_from(["none", "None", "NONE", "nOnE"])), "typ": "JWT"}
        body = {"cid": channel_id, "iat": now, "exp": now + 600}
        signature = draw(st.sampled_from(["", "AAAA", make_token(channel_id).rsplit(".", 1)[1]]))
        return f"{b64url_json(header)}.{b64url_json(body)}.{signature}"
    if kind == "hs512":
        return hand_signed(
            {"alg": "HS512", "typ": "JWT"}, {"cid": channel_id, "iat": now, "exp": now + 600}, secret, hashlib.sha512
        )
    if kind == "rs256-confusion":
        # The classic confusion: alg RS256 (or HS256) "signed" with a public key as the HMAC secret.
        alg = draw(st.sampled_from(["RS256", "HS256", "ES256"]))
        return hand_signed(
            {"alg": alg, "typ": "JWT"}, {"cid": channel_id, "iat": now, "exp": now + 600}, rsa_like_public_key()
        )
    if kind == "tampered":
        original = make_token(draw(st.sampled_from([channel_id + "-other", channel_id])), exp=now + 600)
        head, _, signature = original.split(".")
        forged = {"cid": channel_id, "iat": now, "exp": now + 10**6, "scope": "all"}
        choice = draw(st.integers(0, 2))
        if choice == 0:  # new payload, old signature
            return f"{head}.{b64url_json(forged)}.{signature}"
        if choice == 1:  # a flipped signature character
            position = draw(st.integers(0, len(signature) - 1))
            flipped = "A" if signature[position] != "A" else "B"
            return f"{head}.{original.split('.')[1]}.{signature[:position]}{flipped}{signature[position + 1 :]}"
        return original + draw(st.sampled_from([".", "..", "x", "=", " ", ".e30"]))
    if kind == "crafted":
        header = draw(jwt_header())
        payload = draw(jwt_claims(channel_id))
        key = secret if draw(st.integers(0, 3)) else draw(st.binary(max_size=40))
        return hand_signed(header, payload, key, draw(st.sampled_from([hashlib.sha256, hashlib.sha512])))
    if kind == "huge":
        # 100 KB: far over any sane token; some look like JWTs, some do not.
        base = draw(st.sampled_from(["a", ".", "eyJ", make_token(channel_id)]))
        return (base * (100_000 // len(base) + 1))[:100_000]
    if kind == "api-key":
        return API_KEY
    return draw(st.text(st.characters(codec="latin-1", exclude_characters="\x00\r\n"), max_size=60))


# ---------------------------------------------------------------------------------------------
# Requests


@dataclass
class Request:
    method: str
    path: str
    raw_path: bytes | None
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    chunks: list[bytes]
    form: str = "wire"  # or "hand": a path no UTF-8 URL could carry

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    def header_values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]

    def scope(self) -> dict[str, Any]:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": self.method,
            "scheme": "http",
            "path": self.path,
            "query_string": self.query_string,
            "root_path": "",
            "headers": self.headers,
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        if self.raw_path is not None:
            scope["raw_path"] = self.raw_path
        return scope


id_alphabet = st.one_of(
    st.characters(exclude_categories=["Cs"]),
    st.sampled_from(list("/ \t\n\r\x00\x01\x1b\x7f\x85\x9b\xa0\u1680\u2028\u2029\u3000\ufeff\u200b%?#&=+;.~:@!$'()*,")),
    st.characters(codec="ascii"),
)


def weighted(*options: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Like ``one_of``, with a weight per option (shrinking goes towards the first one)."""
    bounds: list[tuple[int, st.SearchStrategy[Any]]] = []
    total = 0
    for weight, strategy in options:
        total += weight
        bounds.append((total, strategy))
    return st.integers(0, total - 1).flatmap(lambda n: next(s for bound, s in bounds if n < bound))


channel_ids = weighted(
    (3, st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)),
    (3, st.text(id_alphabet, min_size=1, max_size=12)),
    (2, st.text(min_size=0, max_size=140)),
    (1, st.sampled_from(["a" * 128, "a" * 129, "\U0001f680" * 128, "\U0001f680" * 129, ".", "..", "%", "%25", "%2F"])),
)
# Lone surrogates: no UTF-8 URL carries them, but a hand-built (or surrogateescape-decoded) path can.
surrogate_ids = st.tuples(
    st.text(st.characters(codec="ascii"), max_size=4),
    st.lists(st.characters(categories=["Cs"]), min_size=1, max_size=3),
    st.text(st.characters(codec="ascii"), max_size=4),
).map(lambda parts: parts[0] + "".join(parts[1]) + parts[2])

methods = weighted(
    (5, st.just("POST")),
    (4, st.sampled_from(["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"])),
    (1, st.from_regex(r"[A-Z]{1,10}", fullmatch=True)),
)
header_value_bytes = st.binary(max_size=80).map(lambda value: value.translate(None, b"\x00\r\n"))
FRAMING = ("content-length", "transfer-encoding")  # the server's business, generated above
token_chars = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"


def percent_encoded_wire_path(raw_tail: bytes) -> tuple[str, bytes]:
    raw = PREFIX.encode() + b"/" + raw_tail
    return unquote(raw.decode("ascii")), raw


@st.composite
def paths(draw: st.DrawFn) -> tuple[str, bytes | None, str]:
    """(path, raw_path, form): most under the channels prefix, some around it."""
    kind = draw(st.sampled_from(["id", "id", "id", "id", "bytes", "surrogate", "create", "near", "other"]))
    if kind == "id":
        channel_id = draw(channel_ids)
        safe = draw(st.sampled_from(["", "", "/", "%", "/%", "~!$&'()*+,;=:@"]))
        return (*percent_encoded_wire_path(quote(channel_id, safe=safe).encode("ascii")), "wire")
    if kind == "bytes":
        # Arbitrary bytes percent-encoded (often invalid UTF-8), mixed with ASCII.
        parts = draw(
            st.lists(
                st.one_of(st.binary(min_size=1, max_size=4), st.from_regex(r"[A-Za-z0-9._~-]{1,4}", fullmatch=True)),
                min_size=1,
                max_size=6,
            )
        )
        tail = b"".join(
            part.encode("ascii") if isinstance(part, str) else "".join(f"%{b:02X}" for b in part).encode("ascii")
            for part in parts
        )
        return (*percent_encoded_wire_path(tail), "wire")
    if kind == "surrogate":
        channel_id = draw(surrogate_ids)
        raw = draw(
            st.sampled_from(
                [
                    None,
                    (PREFIX + "/" + quote(channel_id.encode("utf-8", "surrogatepass"), safe="")).encode("ascii"),
                    (PREFIX + "/" + quote(channel_id.encode("utf-8", "surrogateescape"), safe="")).encode("ascii")
                    if all(0xDC80 <= ord(c) <= 0xDCFF or ord(c) < 0x80 for c in channel_id)
                    else None,
                ]
            )
        )
        return PREFIX + "/" + channel_id, raw, "hand"
    if kind == "create":
        return PREFIX, PREFIX.encode(), "wire"
    if kind == "near":
        near = draw(
            st.sampled_from(
                [
                    PREFIX + "/",
                    PREFIX + "//",
                    PREFIX + "//x",
                    PREFIX + "/x/",
                    PREFIX + "%2Fabc",
                    PREFIX + "%2F",
                    PREFIX + "/.",
                    PREFIX + "/..",
                    PREFIX + "/%2E%2E",
                    PREFIX + "x",
                    "/webchannel/v1/channel",
                    "/webchannel/v1/",
                    "/webchannel/v2/channels/abc",
                    "/WEBCHANNEL/v1/channels",
                    "/webchannel//v1/channels",
                    "/" + PREFIX,
                    "/",
                    "",
                    "/healthz",
                    "/readyz",
                    "/metrics",
                    "/healthz/",
                ]
            )
        )
        return unquote(near), near.encode("ascii"), "wire"
    text = draw(st.text(max_size=30))
    raw = ("/" + quote(text, safe="/")).encode("ascii")
    return unquote(raw.decode("ascii")), raw, "wire"


def path_channel_id(path: str) -> str | None:
    """The id a publish request names (everything after ``PREFIX/``), or None for other routes."""
    if path.startswith(PREFIX + "/") and len(path) > len(PREFIX) + 1:
        return path[len(PREFIX) + 1 :]
    return None


@st.composite
def authorization_values(draw: st.DrawFn, channel_id: str) -> bytes:
    scheme = draw(
        st.one_of(
            st.sampled_from(["Bearer", "Bearer", "Bearer", "bearer", "BEARER", "Basic", "Token", "JWT", "ApiKey", ""]),
            st.text(st.characters(codec="latin-1", exclude_characters="\x00\r\n"), max_size=10),
        )
    )
    if draw(st.integers(0, 4)) == 0:
        return draw(header_value_bytes)
    token = draw(tokens(channel_id))
    separator = draw(st.sampled_from([" ", " ", "  ", "\t", "", " \t "]))
    trailer = draw(st.sampled_from(["", "", " ", ",", " extra", ", Bearer x"]))
    return f"{scheme}{separator}{token}{trailer}".encode("latin-1", errors="replace").translate(None, b"\x00\r\n")


api_key_values = weighted(
    (3, st.just(API_KEY.encode())),
    (
        2,
        st.sampled_from(
            [
                API_KEY.upper().encode(),
                (API_KEY + " ").encode(),
                (" " + API_KEY).encode(),
                API_KEY[:-1].encode(),
                (API_KEY + API_KEY).encode(),
                (API_KEY + ",x").encode(),
                b"",
                API_KEY.encode() + b"\xe9",
                b"\xe9" + API_KEY.encode()[1:],
                "t\u00e9st-api-key".encode(),
                "t\u00e9st-api-key".encode("latin-1"),
                b"\xff" * 12,
                b"k" * 100_000,
            ]
        ),
    ),
    (1, header_value_bytes),
)

content_types = st.one_of(
    st.sampled_from(
        [
            b"application/json",
            b"application/json; charset=utf-8",
            b"application/json; charset=utf-16",
            b"application/json; charset=rot13",
            b"application/json; charset=hex",
            b"application/json; charset=zlib",
            b"application/json; charset=nonsense",
            b'text/plain; charset="\xe9"',
            b"application/octet-stream",
            b"multipart/form-data",
            b"multipart/form-data; boundary=",
            b"multipart/form-data; boundary=xyz",
            b"application/x-www-form-urlencoded",
            b"application/problem+json",
            b";;;=;",
            b"",
        ]
    ),
    header_value_bytes,
)

deep_json = st.integers(1, CREATE_LIMIT // 2).map(lambda depth: b"[" * depth + b"]" * depth)
json_documents = json_values.map(lambda value: json.dumps(value).encode())
create_documents = st.one_of(
    st.dictionaries(
        st.sampled_from(["channelId", "channelid", "channel_id", "", "\ud800"]) | st.text(max_size=6),
        st.one_of(channel_ids, json_values),
        max_size=3,
    ).map(lambda doc: json.dumps(doc).encode()),
    channel_ids.map(
        lambda channel_id: json.dumps({"channelId": channel_id}, ensure_ascii=False).encode("utf-8", "surrogatepass")
    ),
    st.sampled_from(
        [
            b"{}",
            b" {} ",
            b"null",
            b"[]",
            b'"x"',
            b"1",
            b'{"channelId": null}',
            b'{"channelId": "\\ud800"}',
            b'{"channelId": "a", "channelId": "b/c"}',
            b'{"channelId": 1e999}',
            b'{"channelId": NaN}',
            b'{"channelId": Infinity}',
            b'{"channelId": "' + b"9" * 5000 + b'"}',
            b'{"n": ' + b"9" * 5000 + b"}",
            b"1" + b"0" * 5000,
            b"-1e99999999",
            b"\xef\xbb\xbf{}",
            b"\xff\xfe{\x00}\x00",
            b'{"channelId": "\xff"}',
            '{"channelId": "caf\u00e9"}'.encode("latin-1"),
            b"{",
            b"\x00",
            b" \t\r\n",
        ]
    ),
)


def sized_body(size: int) -> bytes:
    return b"x" * size


bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=300),
    json_documents,
    create_documents,
    deep_json,
    st.sampled_from([CREATE_LIMIT - 1, CREATE_LIMIT, CREATE_LIMIT + 1, MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE + 1]).map(
        sized_body
    ),
)


@st.composite
def chunked(draw: st.DrawFn, body: bytes) -> list[bytes]:
    """``body`` split into 1-5 ``http.request`` messages (some possibly empty)."""
    if not body or draw(st.booleans()):
        return [body]
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    edges = [0, *cuts, len(body)]
    return [body[start:end] for start, end in itertools.pairwise(edges)]


@st.composite
def requests(draw: st.DrawFn) -> Request:
    path, raw_path, form = draw(paths())
    channel_id = path_channel_id(path) or draw(st.from_regex(r"[a-z]{1,8}", fullmatch=True))
    method = draw(methods)
    body = draw(bodies)
    headers: list[tuple[bytes, bytes]] = []
    if draw(st.integers(0, 5)):
        headers.append(
            (b"host", draw(st.sampled_from([b"testserver", b"localhost:8080", b"[::1]:80"]) | header_value_bytes))
        )
    for _ in range(draw(st.integers(0, 2))):
        headers.append((b"authorization", draw(authorization_values(channel_id))))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 1, 1, 2]))):
        headers.append((b"x-api-key", draw(api_key_values)))
    if draw(st.booleans()):
        headers.append((b"content-type", draw(content_types)))
    length = draw(st.sampled_from(["exact", "exact", "none", "none", "shorter", "longer", "huge", "zero", "digits"]))
    if length == "exact":
        headers.append((b"content-length", str(len(body)).encode()))
    elif length == "shorter":
        headers.append((b"content-length", str(max(len(body) - draw(st.integers(1, 10)), 0)).encode()))
    elif length == "longer":
        headers.append((b"content-length", str(len(body) + draw(st.integers(1, 10**6))).encode()))
    elif length == "huge":
        headers.append((b"content-length", draw(st.sampled_from([b"1073741824", b"9" * 40, b"18446744073709551616"]))))
    elif length == "zero":
        headers.append((b"content-length", b"0"))
    elif length == "digits":  # odd but all digits, as Daphne's parser (Twisted) lets through
        headers.append((b"content-length", draw(st.sampled_from([b"00", b"0007", b"0" * 60 + b"1", b"9" * 4000]))))
    if draw(st.integers(0, 4)) == 0:  # CORS (and preflight) headers
        headers.append((b"origin", draw(st.sampled_from([b"https://example.com", b"null", b""]) | header_value_bytes)))
    if draw(st.integers(0, 5)) == 0:
        headers.append((b"access-control-request-method", draw(st.sampled_from([b"POST", b"GET", b"DELETE"]))))
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.text(token_chars, min_size=1, max_size=20).filter(lambda n: n not in FRAMING)).encode("ascii")
        headers.append((name, draw(header_value_bytes)))
    headers = draw(st.permutations(headers))
    query = draw(
        st.one_of(
            st.just(b""),
            # Daphne answers 400 itself to a query string that is not ASCII; whitespace ends the URI.
            st.binary(max_size=40).map(lambda value: bytes(b for b in value if b < 0x80 and not chr(b).isspace())),
            st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3).map(
                lambda pairs: "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs.items()).encode("ascii")
            ),
            st.sampled_from([b"access_token=x", b"wait=5", b"wait=-1", b"wait=1e99", b"frames=text", b"%", b"&&=&"]),
        )
    )
    return Request(method, path, raw_path, query, list(headers), draw(chunked(body)), form)


# ---------------------------------------------------------------------------------------------
# Running a request and checking the answer


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((value for key, value in self.headers if key.lower() == name), None)


async def next_output(communicator: ApplicationCommunicator, seconds: float = 10) -> dict[str, Any]:
    """The application's next message; if it raised instead, that exception, at once (not at the timeout)."""
    getter = asyncio.ensure_future(communicator.output_queue.get())
    try:
        done, _ = await asyncio.wait(
            {getter, communicator.future}, timeout=timeout(seconds), return_when="FIRST_COMPLETED"
        )
    finally:
        if not getter.done():
            getter.cancel()
    if getter in done:
        return getter.result()
    if communicator.future.done():
        communicator.future.result()  # raises what the application raised
        raise AssertionError("the application returned without answering")
    raise AssertionError(f"no answer from the application within {timeout(seconds):.0f}s")


async def run(request: Request) -> Response:
    """One request through the ASGI application; any exception it raises propagates."""
    communicator = ApplicationCommunicator(application, request.scope())
    try:
        for i, chunk in enumerate(request.chunks):
            await communicator.send_input(
                {"type": "http.request", "body": chunk, "more_body": i < len(request.chunks) - 1}
            )
        start = await next_output(communicator)
        assert start["type"] == "http.response.start", start
        body = b""
        while True:
            message = await next_output(communicator)
            assert message["type"] == "http.response.body", message
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await communicator.wait(timeout(10))  # re-raises anything the application raised
    finally:
        communicator.stop(exceptions=False)
    return Response(start["status"], list(start.get("headers", [])), body)


def declared_lengths(request: Request) -> list[int]:
    """Every Content-Length value a lenient parser might read (plain digits or Python's int())."""
    lengths = []
    for value in request.header_values(b"content-length"):
        if value.isdigit() and len(value.lstrip(b"0")) > 19:
            lengths.append(10**19)  # int() refuses more than 4300 digits
            continue
        try:
            lengths.append(int(value))
        except ValueError:
            continue
    return lengths


def credentials_could_be_valid(request: Request, channel_id: str) -> bool:
    """A superset of valid publish credentials: the right key anywhere, or any word that is a good token."""
    if any(value.strip(b" \t") == API_KEY.encode() for value in request.header_values(b"x-api-key")):
        return True
    for value in request.header_values(b"authorization"):
        for word in re.split(r"[\s,]+", value.decode("latin-1")):
            if word and oracle_accepts(word, channel_id):
                return True
    return False


def check(request: Request, response: Response) -> None:
    status = response.status
    context = f"{request.method} path={request.path!r} -> {status} {response.body[:300]!r}"
    assert 100 <= status < 500, f"server error: {context}"

    if status >= 400:
        content_type = (response.header(b"content-type") or b"").decode("latin-1")
        assert_problem_parts(status, content_type, response.body, context=context)

    preflight = request.method == "OPTIONS" and bool(request.header_values(b"access-control-request-method"))
    sizes = [len(request.body), *declared_lengths(request)]
    over_create_limit = max(sizes) > CREATE_LIMIT
    if status == 413:
        assert over_create_limit, f"413 for a small body: {context}"

    channel_id = path_channel_id(request.path)
    if request.path == PREFIX:
        allowed = {200, 400, 401, 405, 413}
        if request.method == "POST" and max(sizes) > CREATE_LIMIT:
            assert status == 413, f"create body over 16 KiB not refused with 413: {context}"
    elif channel_id is not None:
        allowed = {200, 204, 400, 401, 403, 405, 413}  # 200: channel info (GET)
        if not follows_id_rules(channel_id):
            allowed = (allowed - {200, 204}) | {404}  # an invalid id may be 400 or 404 outside create
        if request.method in ("POST", "DELETE") and max(sizes) > MAX_MESSAGE_SIZE:
            assert status == 413, f"publish or close body over max_message_size not refused with 413: {context}"
        if 200 <= status < 300:
            assert request.method in ("POST", "GET", "DELETE") or preflight, context
            if request.method in ("POST", "GET", "DELETE"):
                assert follows_id_rules(channel_id), f"2xx for an invalid id: {context}"
                assert credentials_could_be_valid(request, channel_id), f"2xx publish without credentials: {context}"
    elif request.path in ("/healthz", "/readyz", "/metrics"):
        allowed = {200, 401, 405, 413}
    else:
        allowed = {404, 405, 413}
    if preflight:
        allowed = allowed | {200}
    route = "create" if request.path == PREFIX else "publish" if channel_id is not None else "other"
    if currently_in_test_context():
        event(f"{route} {request.method if request.method in ('POST', 'GET', 'OPTIONS') else 'other'} -> {status}")
    assert status in allowed, f"undocumented status {status} (allowed {sorted(allowed)}): {context}"


# ---------------------------------------------------------------------------------------------
# Properties


@HYPOTHESIS
@given(requests())
@example(Request("POST", PREFIX + "/\ud800", None, b"", [(b"x-api-key", API_KEY.encode())], [b"x"], "hand"))
@example(
    Request("POST", PREFIX + "/a\nb", (PREFIX + "/a%0Ab").encode(), b"", [(b"x-api-key", API_KEY.encode())], [b""])
)
@example(Request("POST", PREFIX, PREFIX.encode(), b"", [(b"x-api-key", API_KEY.encode())], [b"[" * 8000 + b"]" * 8000]))
async def test_any_request_gets_a_documented_answer_never_a_server_error(request_: Request) -> None:
    check(request_, await run(request_))


@HYPOTHESIS
@given(st.data(), weighted((3, channel_ids), (1, surrogate_ids)))
async def test_publish_with_hostile_tokens_is_never_accepted_without_a_valid_one(data, channel_id: str) -> None:
    """Bearer tokens only (no API key): 204 exactly when the token is good for the id, else 400/401/403/404."""
    try:
        raw = (PREFIX + "/" + quote(channel_id.encode("utf-8"), safe="")).encode("ascii")
        path, form = unquote(raw.decode("ascii")), "wire"
    except UnicodeEncodeError:  # lone surrogates: only a hand-built scope carries them
        raw, path, form = None, PREFIX + "/" + channel_id, "hand"
    token = data.draw(tokens(path[len(PREFIX) + 1 :]), label="token")
    authorization = f"Bearer {token}".encode("latin-1", errors="replace")
    body = data.draw(st.binary(max_size=64), label="body")
    request = Request(
        "POST",
        path,
        raw,
        b"",
        [(b"authorization", authorization), (b"content-length", str(len(body)).encode())],
        [body],
        form,
    )
    response = await run(request)
    check(request, response)
    decoded_id = path[len(PREFIX) + 1 :]
    if follows_id_rules(decoded_id):
        expected = oracle_verdict(token.strip(" \t"), decoded_id)  # whitespace around a header value is not in it
        assert response.status == expected, (
            f"{token[:200]!r}: {response.status} {response.body[:200]!r}, not {expected}"
        )


valid_channel_ids = weighted(
    (2, st.from_regex(r"[A-Za-z0-9_-]{1,40}", fullmatch=True)),
    (1, st.text(id_alphabet, min_size=1, max_size=12).filter(follows_id_rules)),
)


@pytest.mark.parametrize("kind", TOKEN_KINDS)
@settings(HYPOTHESIS, max_examples=25)
@given(data=st.data())
async def test_each_kind_of_token_gets_its_documented_answer(kind: str, data) -> None:
    """Every JWT attack (alg none, HS512, RS/HS confusion, tampering, wrong secret, expired,
    not yet valid, other channel, 100 KB) is refused; good tokens publish; other-channel ones get 403."""
    channel_id = data.draw(valid_channel_ids, label="channel_id")
    token = data.draw(token_of_kind(kind, channel_id), label="token")
    raw = (PREFIX + "/" + quote(channel_id, safe="")).encode("ascii")
    headers = [(b"authorization", f"Bearer {token}".encode("latin-1", "replace")), (b"content-length", b"1")]
    request = Request("POST", unquote(raw.decode("ascii")), raw, b"", headers, [b"m"])
    response = await run(request)
    check(request, response)
    expected = oracle_verdict(token.strip(" \t"), channel_id)  # whitespace around a header value is not in it
    if kind == "valid":
        assert expected == 204
    elif kind == "other-channel":
        assert expected == 403
    elif kind in ATTACKS:
        assert expected == 401, f"the generator made a good {kind} token"
    assert response.status == expected, f"{kind} {token[:200]!r}: {response.status} {response.body[:200]!r}"


@HYPOTHESIS
@given(channel_ids, bodies, st.sampled_from(["api-key", "bearer", "other-channel"]))
async def test_well_formed_publish_is_answered_as_documented(channel_id: str, body: bytes, credential: str) -> None:
    """The success path is reachable from the same generators (so the properties above are not vacuous)."""
    raw = (PREFIX + "/" + quote(channel_id, safe="")).encode("ascii")
    path = unquote(raw.decode("ascii"))
    decoded_id = path[len(PREFIX) + 1 :]
    headers = [(b"content-length", str(len(body)).encode())]
    if credential == "api-key":
        headers.append((b"x-api-key", API_KEY.encode()))
    elif credential == "bearer":
        headers.append((b"authorization", f"Bearer {make_token(decoded_id)}".encode("latin-1", errors="replace")))
    else:
        headers.append((b"authorization", f"Bearer {make_token(decoded_id + 'x')}".encode("latin-1", errors="replace")))
    request = Request("POST", path, raw, b"", headers, [body])
    response = await run(request)
    check(request, response)
    if not follows_id_rules(decoded_id):
        assert response.status in (400, 404, 413), response
    elif len(body) > MAX_MESSAGE_SIZE:
        assert response.status == 413, response
    elif credential == "other-channel":
        assert response.status == 403, response
    else:
        assert response.status == 204, response


@HYPOTHESIS
@given(create_documents | st.just(b"") | bodies, st.booleans())
async def test_create_body_is_a_channel_or_a_400(body: bytes, with_key: bool) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if with_key:
        headers.append((b"x-api-key", API_KEY.encode()))
    request = Request("POST", PREFIX, PREFIX.encode(), b"", headers, [body])
    response = await run(request)
    check(request, response)
    if len(body) > CREATE_LIMIT:
        assert response.status == 413
        return
    if not with_key:
        assert response.status == 401
        return
    expected_id = expected_create_id(body)
    if expected_id is False:
        assert response.status == 400, f"{body[:200]!r} -> {response.status} {response.body[:200]!r}"
        return
    assert response.status == 200, f"{body[:200]!r} -> {response.status} {response.body[:200]!r}"
    document = json.loads(response.body)
    assert isinstance(document["channelId"], str)
    assert follows_id_rules(document["channelId"])
    if expected_id is not None:
        assert document["channelId"] == expected_id
    assert oracle_accepts(document["token"], document["channelId"])


def expected_create_id(body: bytes) -> str | bool | None:
    """The id a create body asks for; None for "generate one"; False when the create must answer 400."""
    if not body.strip():
        return None
    try:
        document = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    if not isinstance(document, dict) or set(document) - {"channelId"}:
        return False
    if "channelId" not in document:
        return None
    channel_id = document["channelId"]
    if not isinstance(channel_id, str) or not follows_id_rules(channel_id):
        return False
    return channel_id


# ---------------------------------------------------------------------------------------------
# Beyond what Daphne lets through. The README and asgi.py say any ASGI server can serve the
# application, and not every server front end refuses these before the application sees them
# (Daphne/Twisted do: Content-Length must be digits, header values hold no NUL, the query
# string must be ASCII). The application must still answer them as documented.

BEYOND_DAPHNE = {
    "non-numeric content-length": Request(
        "POST", PREFIX + "/abc", (PREFIX + "/abc").encode(), b"", [(b"content-length", b"abc")], [b""]
    ),
    "content-length of 5000 digits": Request(
        "POST", PREFIX + "/abc", (PREFIX + "/abc").encode(), b"", [(b"content-length", b"9" * 5000)], [b""]
    ),
    "query string that is not UTF-8": Request("POST", PREFIX, PREFIX.encode(), b"\x80", [], [b""]),
    "NUL in the content-type charset": Request(
        "POST", PREFIX, PREFIX.encode(), b"", [(b"content-type", b"text/plain; charset=a\x00b")], [b""]
    ),
}


@pytest.mark.parametrize("case", BEYOND_DAPHNE.values(), ids=BEYOND_DAPHNE.keys())
async def test_input_other_asgi_servers_may_pass_gets_a_documented_answer(case: Request) -> None:
    crash = None
    try:
        response = await run(case)
    except Exception as exc:
        crash = f"the application raised {type(exc).__name__}: {exc}"
    # A crash leaves Django's spooled request body unclosed: with the exception dropped, its
    # ResourceWarning surfaces here, not in whichever test next runs the garbage collector.
    gc.collect()
    if crash:
        pytest.fail(crash)
    check(case, response)
