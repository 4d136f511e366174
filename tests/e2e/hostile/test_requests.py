"""Hostile input against a real server never gets a 500 or a crash.

Property tests (hypothesis) send random requests to one real ``manage.py serve`` process over
loopback: random methods, paths under ``/webchannel/v1/channels`` (percent-encoded Unicode ids,
raw ``%`` garbage, very long ids, dot segments, ``%00``), random credentials (junk bearer tokens,
tokens of 4 to 100 KB, random API keys), content types and bodies. Every answer is a success or a
problem+json 4xx whose ``status`` is the HTTP status; the process stays up. Random WebSocket
handshakes are upgraded exactly when they carry a valid token for the path's channel, and
refused (401/403) otherwise.

The requests stay well-formed HTTP (header values visible ASCII, targets of URL characters),
since Twisted answers malformed HTTP itself before webchannel sees it. Two kinds of well-formed
input that Twisted also handles before webchannel have their own, deterministic tests below:
100 KB tokens (past Twisted's 16 KiB header-line limit) and bodies declared as forms
(``multipart/form-data``), which Twisted parses.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.common import alg_none_token, assert_problem, expired_token, make_token
from tests.e2e.helpers import (
    CHANNELS,
    channel_url,
    create_channel,
    http_client,
    recv_binary,
    subscribe,
    websocket_handshake,
)
from tests.harness import API_KEY, ServerProcess, base_config, serving, timeout

pytestmark = pytest.mark.slow

METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
WEIGHTED_METHODS = [*METHODS, "POST", "POST", "POST", "POST"]  # POST reaches the most code
VISIBLE_ASCII = "".join(chr(c) for c in range(0x21, 0x7F))
# RFC 3986 pchar without "%" (unreserved, sub-delims, ":" and "@").
URL_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"
KNOWN_ID = "hostile-known"
UNREACHABLE_ID = "no/such"
HUGE_TOKEN_BYTES = 100_000

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serving(tmp_path_factory.mktemp("hostile"), base_config()) as server:
        yield server


def assert_still_serving(server: ServerProcess) -> None:
    assert server.alive(), f"the server exited:\n{server.output()[-3000:]}"
    response = httpx.get(f"{server.url}/healthz", timeout=timeout(10))
    assert response.status_code == 200
    output = server.output()
    assert "Traceback" not in output, output[-5000:]


def assert_success_or_problem(response: httpx.Response, what: str) -> None:
    status = response.status_code
    assert status < 500, f"{what} -> {status}: {response.text[:500]}"
    if status >= 400:
        assert_problem(response, context=what)


# --- strategies ------------------------------------------------------------------------------

unicode_ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=0, max_size=150)
percent_garbage = st.text(st.sampled_from([*URL_CHARS, "%", "%", "%"]), min_size=0, max_size=60)
nasty_segments = st.sampled_from(
    [
        "..",
        ".",
        "%2e%2e",
        "%2E%2E%2F%2E%2E",
        "%00",
        "a%00b",
        "%",
        "%%",
        "%zz",
        "%4",
        "%e2%82",
        "%ff%fe",
        "%C0%AE%C0%AE",
        "%2F",
        "%252F",
        "..%2F..%2Fetc%2Fpasswd",
        "%0d%0aSet-Cookie:x=1",
        "%ef%bf%bf",
        "%ed%a0%80",
    ]
)


@st.composite
def targets(draw: st.DrawFn) -> str:
    """A request target under /webchannel/v1/channels made only of URL characters."""
    kind = draw(st.sampled_from(["collection", "unicode", "garbage", "long", "nasty", "known"]))
    if kind == "collection":
        suffix = draw(st.sampled_from(["", "/", "//"]))
    elif kind == "unicode":
        suffix = "/" + quote(draw(unicode_ids), safe="")
    elif kind == "garbage":
        suffix = "/" + draw(percent_garbage)
    elif kind == "long":
        suffix = "/" + draw(st.sampled_from(["a", "%C3%A9", "%F0%9F%98%80", "."])) * draw(st.integers(100, 800))
    elif kind == "nasty":
        suffix = "/" + draw(nasty_segments)
    else:
        suffix = "/" + KNOWN_ID
    if draw(st.integers(0, 4)) == 0:
        suffix += "/" + draw(st.one_of(nasty_segments, percent_garbage))
    if draw(st.booleans()):
        suffix += "?" + draw(st.text(st.sampled_from([*URL_CHARS, "%", "=", "&", "?", "/"]), max_size=100))
    return CHANNELS + suffix


# Tokens past webchannel's 4096-character limit, up to 100 KB (Twisted's header line limit is 16 KiB).
huge_junk_tokens = st.sampled_from([4_097, 10_000, 16_385, 20_000, 50_000, HUGE_TOKEN_BYTES]).map(
    lambda n: ("eyJhbGciOiJIUzI1NiJ9." * (n // 21 + 1))[:n]
)


def junk(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(VISIBLE_ASCII), min_size=1, max_size=max_size)


def jwt_lookalike() -> st.SearchStrategy[str]:
    segment = st.text(st.sampled_from(string.ascii_letters + string.digits + "-_="), max_size=80)
    return st.tuples(segment, segment, segment).map(".".join)


authorization_values = st.one_of(
    junk(200).map(lambda s: f"Bearer {s}"),
    jwt_lookalike().map(lambda s: f"Bearer {s}"),
    junk(200),
    st.sampled_from(["Bearer", "Bearer  x", "bearer x", "Basic Zm9vOmJhcg==", "Bearer a.b.c", "Bearer ..."]),
    st.just(f"Bearer {make_token(KNOWN_ID)}"),
    st.just(f"Bearer {make_token('another-channel')}"),
    st.just(f"Bearer {expired_token(KNOWN_ID)}"),
    st.just(f"Bearer {alg_none_token(KNOWN_ID)}"),
    st.just(f"Bearer {API_KEY}"),
)
api_key_values = st.one_of(
    junk(300), st.just(API_KEY), st.just(API_KEY + "x"), st.just(API_KEY.upper()), huge_junk_tokens
)
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/octet-stream",
            "text/plain; charset=utf-8",
            "multipart/form-data; boundary=xyz",
            "application/x-www-form-urlencoded",
            "application/json; charset=utf-16",
            "*/*",
        ]
    ),
    junk(100),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=20 * 1024),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"channelId": st.one_of(unicode_ids, json_values)}).map(lambda v: json.dumps(v).encode()),
    st.text(max_size=2000).map(lambda s: s.encode("utf-8", "surrogatepass")),
)


class HostileRequest:
    """One request (a plain class, so hypothesis prints it with this short ``repr``)."""

    def __init__(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> None:
        self.method, self.target, self.headers, self.body = method, target, headers, body

    def __repr__(self) -> str:
        headers = {k: (v if len(v) < 120 else f"{v[:60]}...({len(v)} chars)") for k, v in self.headers.items()}
        target = self.target if len(self.target) < 300 else f"{self.target[:200]}...({len(self.target)} chars)"
        return f"{self.method} {target} {headers} body[{len(self.body)}]={self.body[:80]!r}"


@st.composite
def hostile_requests(draw: st.DrawFn) -> HostileRequest:
    headers: dict[str, str] = {}
    if draw(st.booleans()):
        huge = huge_junk_tokens.map(lambda token: f"Bearer {token}")
        headers["authorization"] = draw(st.one_of(huge, authorization_values, authorization_values))
    if draw(st.booleans()):
        headers["x-api-key"] = draw(api_key_values)
    if draw(st.booleans()):
        headers["content-type"] = draw(content_types)
    if draw(st.integers(0, 5)) == 0:
        headers["origin"] = draw(st.sampled_from(["https://evil.example", "null", "http://127.0.0.1"]))
    body = draw(bodies) if draw(st.integers(0, 3)) else b""
    return HostileRequest(draw(st.sampled_from(WEIGHTED_METHODS)), draw(targets()), headers, body)


# --- HTTP ------------------------------------------------------------------------------------


def publishes_with_the_api_key(request: HostileRequest) -> bool:
    """A request the server must accept whatever else it carries: a publish of a small body to a
    valid channel with the right API key (and no Authorization header to argue with it)."""
    return (
        request.method == "POST"
        and request.target == f"{CHANNELS}/{KNOWN_ID}"
        and request.headers.get("x-api-key") == API_KEY
        and "authorization" not in request.headers
    )


def test_random_http_requests_get_a_success_or_a_problem_never_a_500(hostile_server: ServerProcess) -> None:
    server = hostile_server
    statuses: dict[int, int] = {}
    with httpx.Client(base_url=server.url, timeout=timeout(10)) as client:

        @PROPERTY_SETTINGS
        @given(request=hostile_requests())
        @example(request=HostileRequest("POST", f"{CHANNELS}/{KNOWN_ID}", {"x-api-key": API_KEY}, b"known"))
        @example(request=HostileRequest("POST", f"{CHANNELS}/..", {"x-api-key": API_KEY}, b"dots"))
        @example(request=HostileRequest("POST", f"{CHANNELS}/%", {"x-api-key": API_KEY}, b"percent"))
        @example(request=HostileRequest("POST", f"{CHANNELS}/%ff%fe", {"x-api-key": API_KEY}, b"bad utf-8"))
        @example(request=HostileRequest("POST", CHANNELS, {"x-api-key": API_KEY}, b'{"channelId": "%00"}'))
        def check(request: HostileRequest) -> None:
            # The "target" extension sends the target exactly as given: httpx would otherwise
            # normalise dot segments and re-encode stray "%" characters.
            response = client.request(
                request.method,
                "/",
                headers=request.headers,
                content=request.body,
                extensions={"target": request.target.encode("ascii")},
            )
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert_success_or_problem(response, repr(request))
            if publishes_with_the_api_key(request):
                assert response.status_code == 204, f"{request!r} -> {response.status_code} {response.text[:300]}"

        check()
    print(f"[hostile] HTTP statuses seen: {dict(sorted(statuses.items()))}")
    assert_still_serving(server)


# --- WebSocket -------------------------------------------------------------------------------


class Handshake:
    """One handshake; ``valid``: it carries a valid token for the path's channel, and nothing else
    that could contradict it. (A plain class, so hypothesis prints it with this short ``repr``.)"""

    def __init__(self, target: str, headers: dict[str, str], valid: bool) -> None:
        self.target, self.headers, self.valid = target, headers, valid

    def __repr__(self) -> str:
        headers = {k: (v if len(v) < 120 else f"{v[:60]}...({len(v)} chars)") for k, v in self.headers.items()}
        target = self.target if len(self.target) < 300 else f"{self.target[:200]}...({len(self.target)} chars)"
        return f"GET {target} {headers} valid={self.valid}"


valid_ids = st.text(
    st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/"), min_size=1, max_size=128
).filter(lambda s: not any(c.isspace() for c in s))
other_query = st.lists(
    st.tuples(
        st.text(st.sampled_from(string.ascii_lowercase + "_"), min_size=1, max_size=12).filter(
            lambda name: name != "access_token"
        ),
        st.text(st.sampled_from([*URL_CHARS, "%"]), max_size=40),
    ),
    max_size=3,
)


@st.composite
def handshakes(draw: st.DrawFn) -> Handshake:
    kind = draw(st.sampled_from(["valid", "valid", "bad-token", "huge-token", "bad-id", "garbage-path"]))
    in_header = draw(st.booleans())
    query = [f"{name}={value}" for name, value in draw(other_query)]
    headers: dict[str, str] = {}
    if kind == "garbage-path":
        target = draw(targets())
        # No valid channel id contains "/", so no target can make this token valid.
        token = draw(st.one_of(st.none(), st.just(make_token(UNREACHABLE_ID)), junk(100)))
        valid = False
    else:
        channel_id = draw(valid_ids)
        if kind == "bad-id":
            channel_id = draw(
                st.sampled_from(
                    [
                        "x" * 129,
                        "a/b",
                        "a b",
                        "a\x00b",
                        "tab\there",
                        "\x7f",
                        channel_id + "\n",
                        channel_id + "/" + channel_id,
                    ]
                )
            )
        target = f"{CHANNELS}/{quote(channel_id, safe='')}"
        if kind == "huge-token":
            token = draw(huge_junk_tokens)
        elif kind == "bad-token":
            token = draw(
                st.one_of(
                    st.none(),
                    junk(300),
                    jwt_lookalike(),
                    st.just(make_token(channel_id + "x")),
                    st.just(expired_token(channel_id)),
                    st.just(make_token(channel_id, secret="another-secret-" + "y" * 32)),
                    st.just(alg_none_token(channel_id)),
                    st.just(API_KEY),
                )
            )
        else:
            token = make_token(channel_id)
        valid = kind == "valid"
    if token is not None:
        if in_header:
            headers["authorization"] = f"Bearer {token}"
        else:
            query.append(f"access_token={quote(token, safe='')}")
    if query:
        target += ("&" if "?" in target else "?") + "&".join(query)
    return Handshake(target, headers, valid)


def test_random_websocket_handshakes_are_upgraded_only_with_a_valid_token_never_a_500(
    hostile_server: ServerProcess,
) -> None:
    server = hostile_server
    outcomes: dict[int | None, int] = {}

    @PROPERTY_SETTINGS
    @given(handshake=handshakes())
    @example(handshake=Handshake(f"{CHANNELS}/..?access_token={make_token('..')}", {}, valid=True))
    @example(handshake=Handshake(f"{CHANNELS}/%25?access_token={make_token('%')}", {}, valid=True))
    def check(handshake: Handshake) -> None:
        status = websocket_handshake(server.url, handshake.target, handshake.headers)
        outcomes[status] = outcomes.get(status, 0) + 1
        assert status is not None, f"{handshake!r}: connection closed without an HTTP answer"
        if handshake.valid:
            assert status == 101, f"{handshake!r}: refused with {status}"
        else:
            # 431: a request line or header over Twisted's 16 KiB line limit, answered as problem+json
            assert status in (401, 403, 431), f"{handshake!r}: answered {status}"

    check()
    print(f"[hostile] WebSocket handshake statuses seen: {outcomes}")
    assert_still_serving(server)


# --- 100 KB tokens ---------------------------------------------------------------------------


def huge_token() -> str:
    """A 100 KB token that looks like a JWT."""
    token = make_token(KNOWN_ID)
    header, payload, signature = token.split(".")
    return f"{header}.{payload}{'A' * (HUGE_TOKEN_BYTES - len(token))}.{signature}"


@pytest.mark.parametrize(
    ("method", "path", "header"),
    [
        pytest.param("POST", f"{CHANNELS}/{KNOWN_ID}", "authorization", id="publish-bearer"),
        pytest.param("POST", CHANNELS, "x-api-key", id="create-x-api-key"),
    ],
)
def test_a_100_kb_credential_gets_a_4xx_problem(
    hostile_server: ServerProcess, method: str, path: str, header: str
) -> None:
    token = huge_token()
    value = f"Bearer {token}" if header == "authorization" else token
    assert len(value) >= HUGE_TOKEN_BYTES
    try:
        response = httpx.request(
            method, f"{hostile_server.url}{path}", headers={header: value}, content=b"x", timeout=timeout(10)
        )
    except httpx.RemoteProtocolError as exc:
        pytest.fail(f"a {len(value)}-byte {header} header: the server closed the connection without answering ({exc})")
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert_success_or_problem(response, f"{method} {path} with a {len(value)}-byte {header}")
    assert_still_serving(hostile_server)


@pytest.mark.parametrize("where", ["header", "query"])
def test_a_100_kb_token_on_a_websocket_handshake_is_refused_with_an_http_answer(
    hostile_server: ServerProcess, where: str
) -> None:
    token = huge_token()
    target = f"{CHANNELS}/{KNOWN_ID}"
    headers: dict[str, str] = {}
    if where == "header":
        headers["authorization"] = f"Bearer {token}"
    else:
        target += f"?access_token={token}"
    status = websocket_handshake(hostile_server.url, target, headers)
    assert status is not None, f"a {len(token)}-byte token in the {where}: closed without an HTTP answer"
    assert 400 <= status < 500, status
    assert_still_serving(hostile_server)


# --- bodies whatever the Content-Type says ---------------------------------------------------

FORM_BODIES = [
    pytest.param("multipart/form-data; boundary=xyz", b"\x00", id="multipart-nul-byte"),
    pytest.param("multipart/form-data; boundary=xyz", b'{"progress": 42}', id="multipart-json"),
    pytest.param("multipart/form-data", b"no boundary at all", id="multipart-without-boundary"),
    pytest.param(
        "multipart/form-data; boundary=xyz",
        b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue\r\n--xyz--\r\n',
        id="multipart-well-formed",
    ),
    pytest.param("application/x-www-form-urlencoded", b"a=%zz&b&=&%", id="urlencoded-garbage"),
]


@pytest.mark.parametrize(("content_type", "body"), FORM_BODIES)
async def test_a_publish_is_relayed_unchanged_whatever_form_content_type_it_declares(
    hostile_server: ServerProcess, content_type: str, body: bytes
) -> None:
    """Publish relays any bytes with any Content-Type unchanged (no form parsing)."""
    server = hostile_server
    channel_id, token = create_channel(server.url)
    async with http_client() as client, subscribe(server.url, channel_id, token) as ws:
        response = await client.post(
            channel_url(server.url, channel_id),
            content=body,
            headers={"authorization": f"Bearer {token}", "content-type": content_type},
        )
        assert response.status_code == 204, (
            f"publish with Content-Type {content_type!r} -> {response.status_code} "
            f"{response.headers.get('content-type')!r} {response.text[:200]!r}"
        )
        assert await recv_binary(ws) == body
    assert_still_serving(server)


def test_create_reads_its_body_as_json_even_when_it_is_declared_multipart(hostile_server: ServerProcess) -> None:
    """README: the create body is JSON whatever the Content-Type."""
    response = httpx.post(
        f"{hostile_server.url}{CHANNELS}",
        headers={"x-api-key": API_KEY, "content-type": "multipart/form-data; boundary=xyz"},
        content=b'{"channelId": "declared-multipart"}',
        timeout=timeout(10),
    )
    assert_success_or_problem(response, "create declared multipart/form-data")
    assert response.status_code == 200, response.text
    assert response.json()["channelId"] == "declared-multipart"
