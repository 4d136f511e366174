"""Garbage header values get a success or a 4xx problem, never a 500, on every route of a real server.

Requests go over raw sockets to one ``manage.py serve`` process, so the bytes are exactly the
ones written here: header values that are not ASCII, not UTF-8, hold control characters or
are malformed credentials, on every route (HTTP, WebSocket handshakes and event streams).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests.common import assert_problem_parts, make_token
from tests.e2e.helpers import CHANNELS, RawResponse, raw_http
from tests.harness import API_KEY, ServerProcess, base_config, serving, wait_for

pytestmark = pytest.mark.slow

METRICS_AUTH = ("scraper", "scrape-password-123")
CHANNEL_ID = "hostile-headers"
TOKEN = make_token(CHANNEL_ID)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    user, password = METRICS_AUTH
    config = base_config(metrics={"auth_enabled": True, "auth_username": user, "auth_password": password})
    with serving(tmp_path_factory.mktemp("hostile-headers"), config) as server:
        yield server


# --- hostile header values on every route ----------------------------------------------------

HOSTILE_VALUES: dict[str, bytes] = {
    "latin-1": b"caf\xe9",
    "utf-8": "é✓ ünïcode".encode(),
    "invalid-utf-8": b"\xff\xfe\x80\xc3",
    "controls": b"a\x01\x7fb",
    "basic-non-ascii": b"Basic \xc3\xa9\xc3\xa9",
    "basic-not-base64": b"Basic %%%==",
    "basic-not-utf-8": b"Basic " + base64.b64encode(b"\xff\xfe:\x80"),
    "bearer-non-ascii": b"Bearer \xe9\xff",
    "separators": b',;="\\,;',
    "empty": b"",
    "long": b"x" * 8000,
}
HOSTILE_HEADERS = [
    "authorization",
    "x-api-key",
    "origin",
    "accept",
    "content-type",
    "host",
    "cookie",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-forwarded-for",
    "last-event-id",
]
WEBSOCKET_HEADERS = {
    "upgrade": b"websocket",
    "connection": b"Upgrade",
    "sec-websocket-key": base64.b64encode(b"0123456789abcdef"),
    "sec-websocket-version": b"13",
}


class Route:
    """A route with the headers and body that make a valid request of it."""

    def __init__(self, method: str, target: str, headers: dict[str, bytes] | None = None, body: bytes = b"") -> None:
        self.method, self.target, self.headers, self.body = method, target, headers or {}, body

    def __repr__(self) -> str:
        return f"{self.method} {self.target}"


def basic(user: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode())


ROUTES = {
    "create": Route("POST", CHANNELS, {"x-api-key": API_KEY.encode()}, b"{}"),
    "publish": Route("POST", f"{CHANNELS}/{CHANNEL_ID}", {"authorization": f"Bearer {TOKEN}".encode()}, b"x"),
    "info": Route("GET", f"{CHANNELS}/{CHANNEL_ID}", {"x-api-key": API_KEY.encode()}),
    "close": Route("DELETE", f"{CHANNELS}/{CHANNEL_ID}", {"x-api-key": API_KEY.encode()}),
    "events": Route(
        "GET", f"{CHANNELS}/{CHANNEL_ID}/events?access_token={quote(TOKEN)}", {"accept": b"text/event-stream"}
    ),
    "subscribe": Route("GET", f"{CHANNELS}/{CHANNEL_ID}?access_token={quote(TOKEN)}", WEBSOCKET_HEADERS),
    "subscribe-header": Route(
        "GET", f"{CHANNELS}/{CHANNEL_ID}", {**WEBSOCKET_HEADERS, "authorization": f"Bearer {TOKEN}".encode()}
    ),
    "preflight": Route(
        "OPTIONS", CHANNELS, {"origin": b"https://app.example", "access-control-request-method": b"POST"}
    ),
    "healthz": Route("GET", "/healthz"),
    "readyz": Route("GET", "/readyz"),
    "metrics": Route("GET", "/metrics", {"authorization": basic(*METRICS_AUTH)}),
    "openapi": Route("GET", "/webchannel/v1/openapi.json"),
    "client-js": Route("GET", "/webchannel/v1/client.js"),
    "unrouted": Route("GET", "/no/such/path"),
}


def assert_no_error_logged(server: ServerProcess) -> None:
    output = server.output()
    assert "Traceback" not in output, output[-3000:]
    assert " ERROR " not in output, output[-3000:]


def problem_or_success(route: Route, header: str, kind: str, answer: RawResponse) -> str | None:
    """What is wrong with ``answer``, or None: a status under 500, and a problem for every error."""
    what = f"{route!r} with {header}: <{kind}> -> {answer.status}"
    if answer.status >= 500:
        return f"{what} {answer.body[:200]!r}"
    if answer.status >= 400:
        try:
            assert_problem_parts(answer.status, answer.content_type, answer.body, context=what)
        except (AssertionError, ValueError) as exc:
            return f"{what}: not a problem+json answer ({exc})"
    return None


@pytest.mark.parametrize("name", list(ROUTES))
def test_hostile_header_values_get_a_success_or_a_4xx_problem_on_every_route(server: ServerProcess, name: str) -> None:
    route = ROUTES[name]
    wrong = []
    for header in HOSTILE_HEADERS:
        for kind, value in HOSTILE_VALUES.items():
            answer = raw_http(server, route.method, route.target, {**route.headers, header: value}, route.body)
            wrong.append(problem_or_success(route, header, kind, answer))
    assert [w for w in wrong if w] == []
    assert_no_error_logged(server)


# --- the two 500s this fixed -----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [b"Basic \xc3\xa9\xc3\xa9", "Basic é".encode(), b"Basic \xff", b"Basic " + base64.b64encode(b"\xff:\xfe")],
    ids=["utf-8", "utf-8-short", "latin-1", "credentials-not-utf-8"],
)
def test_unreadable_basic_credentials_on_metrics_get_401(server: ServerProcess, value: bytes) -> None:
    answer = raw_http(server, "GET", "/metrics", {"authorization": value})
    assert_problem_parts(answer.status, answer.content_type, answer.body, 401)
    assert answer.headers["www-authenticate"].startswith("Basic ")


def test_a_non_ascii_subprotocol_refuses_the_handshake_with_a_400_problem(server: ServerProcess) -> None:
    target = f"{CHANNELS}/{CHANNEL_ID}-subprotocol?access_token={quote(make_token(CHANNEL_ID + '-subprotocol'))}"
    headers = {**WEBSOCKET_HEADERS, "sec-websocket-protocol": "webchannel, wébchannel".encode()}
    answer = raw_http(server, "GET", target, headers)
    document = assert_problem_parts(answer.status, answer.content_type, answer.body, 400)
    assert "sec-websocket-protocol" in document["detail"]
    line = f'"WS {CHANNELS}/{CHANNEL_ID}-subprotocol?access_token=[redacted]" refused 400'
    wait_for(lambda: line in server.output(), 10, "the refused handshake's access-log line")
    assert_no_error_logged(server)


def test_a_refused_handshake_answers_its_status_line_without_the_clients_bytes(server: ServerProcess) -> None:
    """autobahn's refusals used to echo the offending header in the status line."""
    headers = {**WEBSOCKET_HEADERS, "origin": b"\xc3\xa9\xff", "sec-websocket-key": b"\xc3\xa9"}
    target = f"{CHANNELS}/{CHANNEL_ID}?access_token={quote(TOKEN)}"
    answer = raw_http(server, "GET", target, headers)
    document = assert_problem_parts(answer.status, answer.content_type, answer.body, 400)
    assert document["title"] == "Bad Request"
    refused = raw_http(server, "GET", f"{CHANNELS}/{CHANNEL_ID}?access_token=not-a-token", WEBSOCKET_HEADERS)
    assert_problem_parts(refused.status, refused.content_type, refused.body, 403)
    assert json.loads(refused.body)["title"] == "Forbidden"
