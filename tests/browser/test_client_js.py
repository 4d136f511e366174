"""The browser subscriber module served at /webchannel/v1/client.js, in headless Chromium.

A page on another origin (a small HTTP server of the test, on another port) imports the module
from a real ``manage.py serve``, as a Django app's page would, and subscribes. (Both are on
loopback: Chromium refuses a public page access to loopback addresses.) The page's
``getToken`` hands out the tokens the test queued in ``window.__tokens`` (the last one again
when one is left; ``"throw"`` makes it throw) and counts its calls; a ``WebSocket`` subclass records every socket the
module opens. The close codes the real server cannot be made to send on demand (4008, 4013,
1011, ...) come from a small WebSocket server inside the test.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from channels_api.auth import issue_token
from tests.browser.test_browser import CHROMIUM, CHROMIUM_ARGS, create_channel, require_browser
from tests.e2e.client.test_client_js import MODULE_PATH
from tests.harness import REPO, SECRET_KEY, ServerProcess, base_config, free_port, run_serve, timeout

PAGE = """<!doctype html><title>webchannel client.js test</title>
<script>
window.__tokens = [];
window.__tokenCalls = 0;
window.__statuses = [];
window.__messages = [];
window.__sockets = [];
const RealWebSocket = window.WebSocket;
window.WebSocket = class extends RealWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    window.__sockets.push({ url, protocols, socket: this });
  }
};
</script>
"""
# Receives the module's URL, the channel's WebSocket URL and the frames option. Messages are
# recorded as text: an ArrayBuffer decoded, a string (a text frame) with "string:" before it.
SUBSCRIBE = """async ([moduleUrl, url, frames]) => {
  const { subscribe } = await import(moduleUrl);
  window.__subscription = subscribe(url, {
    getToken: async () => {
      window.__tokenCalls += 1;
      const token = window.__tokens.length > 1 ? window.__tokens.shift() : window.__tokens[0];
      if (token === "throw") throw new Error("the token endpoint failed");
      return token;
    },
    onMessage: (data) => window.__messages.push(data instanceof ArrayBuffer ? new TextDecoder().decode(data)
      : typeof data === "string" ? "string:" + data : "neither ArrayBuffer nor string"),
    onStatus: (status) => window.__statuses.push(status),
    frames,
  });
}"""
STATE = "({statuses: window.__statuses, messages: window.__messages, tokenCalls: window.__tokenCalls})"


# --- in Chromium -------------------------------------------------------------------------------


class Browser:
    """The test's page, with the module's subscription in ``window.__subscription``."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.errors: list[str] = []

    async def evaluate(self, expression: str, arg: Any = None) -> Any:
        return await self.page.evaluate(expression, arg)

    async def subscribe(self, module_origin: str, ws_url: str, tokens: list[str], frames: str | None = None) -> None:
        await self.evaluate("(tokens) => { window.__tokens = tokens; }", tokens)
        await self.evaluate(SUBSCRIBE, [module_origin + MODULE_PATH, ws_url, frames])

    async def wait(self, expression: str, what: str, seconds: float = 10) -> None:
        """Wait until ``expression`` is truthy in the page, at most ``timeout(seconds)``."""
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        try:
            await self.page.wait_for_function(expression, timeout=timeout(seconds) * 1000)
        except PlaywrightTimeout:
            state = await self.evaluate(STATE)
            raise AssertionError(f"timed out waiting for {what}; page state {state}, errors {self.errors}") from None

    async def stays_false(self, expression: str, seconds: float) -> bool:
        """True when ``expression`` stayed falsy for ``seconds`` (how a test shows nothing happened)."""
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        try:
            await self.page.wait_for_function(expression, timeout=seconds * 1000)
        except PlaywrightTimeout:
            return True
        return False

    async def opened(self) -> int:
        return int(await self.evaluate("window.__statuses.filter((s) => s.state === 'open').length"))


class PageServer(ThreadingHTTPServer):
    """The test's web app: fixed answers by path (``routes``), counting the requests for each."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _PageHandler)
        self.routes: dict[str, tuple[str, bytes]] = {"/": ("text/html; charset=utf-8", PAGE.encode())}
        self.hits: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _PageHandler(BaseHTTPRequestHandler):
    server: PageServer

    def do_GET(self) -> None:
        self.server.hits[self.path] = self.server.hits.get(self.path, 0) + 1
        content_type, body = self.server.routes.get(self.path, ("text/plain", b"not found"))
        self.send_response(200 if self.path in self.server.routes else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    """A :class:`PageServer` on a free loopback port, another origin than the webchannel server's."""
    httpd = PageServer()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout(5))


@pytest.fixture
async def browser(page_server: PageServer) -> AsyncIterator[Browser]:
    """Headless Chromium showing ``PAGE``; closed after the test."""
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await chromium.new_page()
            result = Browser(page)
            page.on("pageerror", lambda error: result.errors.append(f"pageerror: {error}"))
            await page.goto(page_server.url + "/")
            yield result
        finally:
            await chromium.close()


def channel_ws_url(server: ServerProcess, channel_id: str) -> str:
    return f"{server.ws_url}/webchannel/v1/channels/{quote(channel_id, safe='')}"


async def publish(server: ServerProcess, channel_id: str, token: str, body: str | bytes) -> None:
    async with httpx.AsyncClient(timeout=timeout(10)) as client:
        response = await client.post(
            f"{server.url}/webchannel/v1/channels/{quote(channel_id, safe='')}",
            headers={"Authorization": f"Bearer {token}"},
            content=body.encode() if isinstance(body, str) else body,
        )
    assert response.status_code == 204, response.text


@dataclass
class Restartable:
    """A ``manage.py serve`` on a fixed port that the test restarts; ``runs`` holds every run."""

    tmp_path: Path
    config: dict[str, dict[str, Any]]
    runs: list[ServerProcess] = field(default_factory=list)

    @property
    def server(self) -> ServerProcess:
        return self.runs[-1]

    def start(self) -> ServerProcess:
        self.runs.append(run_serve(self.tmp_path, self.config, name=f"run{len(self.runs)}"))
        self.server.wait_listening()
        return self.server

    def restart(self) -> ServerProcess:
        """SIGTERM the server (its subscribers get 1012), then start it again on the same port."""
        old = self.server
        old.signal(signal.SIGTERM)
        assert old.wait_exit(10) == 0, old.output()
        new = self.start()
        assert new.port == old.port
        return new


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Restartable]:
    """A :class:`Restartable` server with the test secret; every run stopped afterwards."""
    config = base_config(server={"listen_address": f"127.0.0.1:{free_port()}", "drain_window": 0.2})
    servers = Restartable(tmp_path, config)
    try:
        servers.start()
        yield servers
    finally:
        for server in servers.runs:
            server.stop()


@pytest.mark.slow
async def test_page_reconnects_by_itself_after_a_server_restart(browser, restartable):
    server = restartable.server
    created = await create_channel(server)
    channel_id, token = created["channelId"], created["token"]
    await browser.subscribe(server.url, channel_ws_url(server, channel_id), [token])
    await browser.wait("window.__statuses.some((s) => s.state === 'open')", "the subscription to open")
    await publish(server, channel_id, token, "before")
    await browser.wait("window.__messages.length === 1", "the message published before the restart")

    server = restartable.restart()
    await browser.wait(
        "window.__statuses.filter((s) => s.state === 'open').length === 2", "the page to reconnect", seconds=30
    )
    await publish(server, channel_id, token, "after")
    await browser.wait("window.__messages.length === 2", "the message published after the restart")

    assert await browser.evaluate("window.__messages") == ["before", "after"]
    statuses = await browser.evaluate("window.__statuses")
    closes = [s for s in statuses if s["state"] == "reconnecting"]
    assert closes[0]["code"] == 1012, statuses
    assert 0 <= closes[0]["delay"] <= 30_000
    # Attempts while the port is closed fail before open, like a refused token, so the page may
    # have been asked again; here it always answers with the same (valid) token.
    sockets = await browser.evaluate("window.__sockets.map((s) => s.protocols)")
    assert all(protocols == ["webchannel", f"webchannel.bearer.{token}"] for protocols in sockets), sockets
    assert all("access_token" not in url for url in await browser.evaluate("window.__sockets.map((s) => s.url)"))
    assert browser.errors == []


@pytest.mark.slow
async def test_a_socket_closed_at_its_tokens_expiry_reconnects_with_a_fresh_token(browser, shared_server):
    channel_id = "expiring"
    short = issue_token(channel_id, SECRET_KEY, ttl=2)
    fresh = issue_token(channel_id, SECRET_KEY, ttl=600)
    await browser.subscribe(shared_server.url, channel_ws_url(shared_server, channel_id), [short.token, fresh.token])
    await browser.wait("window.__statuses.some((s) => s.state === 'open')", "the subscription to open")
    await browser.wait(
        "window.__statuses.filter((s) => s.state === 'open').length === 2", "the reconnect after 4005", seconds=15
    )
    statuses = await browser.evaluate("window.__statuses")
    closes = [s for s in statuses if s["state"] == "reconnecting"]
    assert [(s["code"], s["reason"]) for s in closes] == [(4005, "token expired")], statuses
    assert time.time() >= short.expires_at, "closed no earlier than the token's exp"
    assert await browser.evaluate("window.__tokenCalls") == 2
    protocols = await browser.evaluate("window.__sockets.map((s) => s.protocols[1])")
    assert protocols == [f"webchannel.bearer.{short.token}", f"webchannel.bearer.{fresh.token}"]
    await publish(shared_server, channel_id, fresh.token, "with the fresh token")
    await browser.wait("window.__messages.length === 1", "a message on the reconnected socket")
    assert browser.errors == []


@pytest.mark.slow
async def test_an_expired_token_is_replaced_through_get_token_before_reconnecting(browser, restartable):
    """A token whose exp passed while the page was away (no 4005 reached it) is not offered again."""
    server = restartable.server
    channel_id = "expiring"
    long = issue_token(channel_id, SECRET_KEY, ttl=600)
    fresh = issue_token(channel_id, SECRET_KEY, ttl=600)
    await browser.subscribe(server.url, channel_ws_url(server, channel_id), [long.token, fresh.token])
    await browser.wait("window.__statuses.some((s) => s.state === 'open')", "the subscription to open")
    # The page's clock says the token is past its exp (the server's does not): only the module
    # reading exp explains why the attempt after the restart asks for a fresh one.
    await browser.evaluate(
        f"(() => {{ const skew = {long.expires_at + 1} * 1000 - Date.now(); "
        "const now = Date.now; Date.now = () => now() + skew; })()"
    )

    server = restartable.restart()
    await browser.wait("window.__statuses.filter((s) => s.state === 'open').length === 2", "a reconnect", seconds=30)
    assert await browser.evaluate("window.__tokenCalls") >= 2
    protocols = await browser.evaluate("window.__sockets.map((s) => s.protocols[1])")
    assert protocols[0] == f"webchannel.bearer.{long.token}"
    assert set(protocols[1:]) == {f"webchannel.bearer.{fresh.token}"}, protocols
    await publish(server, channel_id, fresh.token, "with the fresh token")
    await browser.wait("window.__messages.length === 1", "a message on the reconnected socket")


@pytest.mark.slow
async def test_a_refused_token_makes_the_page_ask_for_a_fresh_one(browser, shared_server):
    created = await create_channel(shared_server)
    channel_id, token = created["channelId"], created["token"]
    await browser.subscribe(shared_server.url, channel_ws_url(shared_server, channel_id), ["not-a-token", token])
    await browser.wait("window.__statuses.some((s) => s.state === 'open')", "the subscription to open")
    statuses = await browser.evaluate("window.__statuses")
    assert [s["state"] for s in statuses] == ["connecting", "reconnecting", "connecting", "open"], statuses
    assert statuses[1]["code"] == 1006, "a refused handshake is all a browser sees"
    assert await browser.evaluate("window.__tokenCalls") == 2
    await publish(shared_server, channel_id, token, "hello")
    await browser.wait("window.__messages.length === 1", "the message")
    assert await browser.evaluate("window.__messages") == ["hello"]


@pytest.mark.slow
@pytest.mark.parametrize(("frames", "text"), [(None, "\u00e9t\u00e9"), ("text", "string:\u00e9t\u00e9")])
async def test_messages_are_array_buffers_or_with_frames_text_strings_when_utf8(browser, shared_server, frames, text):
    created = await create_channel(shared_server, "fr\u00e4mes?&=")
    channel_id, token = created["channelId"], created["token"]
    url = channel_ws_url(shared_server, channel_id)
    await browser.subscribe(shared_server.url, url, [token], frames)
    await browser.wait("window.__statuses.some((s) => s.state === 'open')", "the subscription to open")
    await publish(shared_server, channel_id, token, "\u00e9t\u00e9")
    await publish(shared_server, channel_id, token, b"\xff\xfe")  # not UTF-8: binary either way
    await browser.wait("window.__messages.length === 2", "two messages")
    assert await browser.evaluate("window.__messages") == [text, "\ufffd\ufffd"]
    opened = await browser.evaluate("window.__sockets[0].socket.url")
    assert opened == (url if frames is None else url + "?frames=text")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("first", "error"),
    [("throw", "the token endpoint failed"), ("not a subprotocol", "SyntaxError")],
    ids=["get-token-throws", "token-with-spaces"],
)
async def test_a_failed_get_token_or_an_unusable_token_is_retried_with_backoff(browser, shared_server, first, error):
    created = await create_channel(shared_server)
    channel_id, token = created["channelId"], created["token"]
    await browser.subscribe(shared_server.url, channel_ws_url(shared_server, channel_id), [first, token])
    await browser.wait("window.__statuses.some((s) => s.state === 'open')", "the subscription to open")
    statuses = await browser.evaluate("window.__statuses.map((s) => [s.state, String(s.error ?? '')])")
    assert [state for state, _ in statuses] == ["connecting", "reconnecting", "connecting", "open"], statuses
    assert error in statuses[1][1]
    assert await browser.evaluate("window.__tokenCalls") == 2
    assert browser.errors == []


@pytest.mark.slow
async def test_closing_the_channel_delivers_its_last_message_then_stops_the_subscription(browser, shared_server):
    created = await create_channel(shared_server)
    channel_id, token = created["channelId"], created["token"]
    await browser.subscribe(shared_server.url, channel_ws_url(shared_server, channel_id), [token])
    await browser.wait("window.__statuses.some((s) => s.state === 'open')", "the subscription to open")
    async with httpx.AsyncClient(timeout=timeout(10)) as client:
        response = await client.request(
            "DELETE",
            f"{shared_server.url}/webchannel/v1/channels/{quote(channel_id, safe='')}",
            headers={"Authorization": f"Bearer {token}"},
            content=b"done",
        )
    assert response.status_code == 204, response.text
    await browser.wait("window.__statuses.some((s) => s.state === 'stopped')", "the subscription to stop")
    assert await browser.evaluate("window.__messages") == ["done"]
    assert (await browser.evaluate("window.__statuses"))[-1]["code"] == 4000
    assert await browser.stays_false("window.__sockets.length > 1", seconds=1.5), "it reconnected after 4000"


@pytest.mark.slow
async def test_the_real_server_closing_with_4003_stops_the_subscription(browser, shared_server):
    created = await create_channel(shared_server)
    channel_id, token = created["channelId"], created["token"]
    await browser.subscribe(shared_server.url, channel_ws_url(shared_server, channel_id), [token])
    await browser.wait("window.__statuses.some((s) => s.state === 'open')", "the subscription to open")
    # The module never sends; the test does, on the module's socket, to make the server close it.
    await browser.evaluate("window.__sockets[0].socket.send('data from a subscriber')")
    await browser.wait("window.__statuses.some((s) => s.state === 'stopped')", "the subscription to stop")
    assert (await browser.evaluate("window.__statuses"))[-1] == {
        "state": "stopped",
        "code": 4003,
        "reason": "data from client",
    }
    assert await browser.stays_false("window.__sockets.length > 1", seconds=1.5), "it reconnected after 4003"


@pytest.mark.slow
async def test_close_stops_reconnecting(browser, shared_server):
    created = await create_channel(shared_server)
    await browser.subscribe(shared_server.url, channel_ws_url(shared_server, created["channelId"]), [created["token"]])
    await browser.wait("window.__statuses.some((s) => s.state === 'open')", "the subscription to open")
    await browser.evaluate("window.__subscription.close()")
    await browser.wait("window.__sockets[0].socket.readyState === WebSocket.CLOSED", "the socket to close")
    assert (await browser.evaluate("window.__statuses"))[-1] == {"state": "stopped"}
    assert await browser.stays_false("window.__sockets.length > 1", seconds=1.5), "it reconnected after close()"


class CloseOnce:
    """A WebSocket server that accepts (subprotocol ``webchannel``) and closes the first connection with ``code``."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.connections = 0

    async def handler(self, connection: ServerConnection) -> None:
        self.connections += 1
        if self.connections == 1:
            await connection.close(self.code, "closed by the test")
        else:
            await connection.wait_closed()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("code", "reconnects"),
    [(4000, False), (4003, False), (4008, True), (4013, True), (1011, True), (1000, True), (4999, True)],
)
async def test_close_codes_4000_and_4003_stop_every_other_code_reconnects(browser, shared_server, code, reconnects):
    peer = CloseOnce(code)
    async with serve(peer.handler, "127.0.0.1", 0, subprotocols=[Subprotocol("webchannel")]) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        token = issue_token("c", SECRET_KEY, ttl=600).token
        await browser.subscribe(shared_server.url, f"ws://127.0.0.1:{port}/webchannel/v1/channels/c", [token])
        if reconnects:
            await browser.wait("window.__statuses.filter((s) => s.state === 'open').length === 2", "a reconnect")
            statuses = await browser.evaluate("window.__statuses")
            assert statuses[2] == {"state": "reconnecting", "code": code, "reason": "closed by the test"} | {
                "delay": statuses[2]["delay"]
            }
            assert statuses[2]["delay"] <= 500, "the first delay is at most 0.5 s"
            assert await browser.evaluate("window.__tokenCalls") == 1
        else:
            await browser.wait("window.__statuses.some((s) => s.state === 'stopped')", "the subscription to stop")
            assert (await browser.evaluate("window.__statuses"))[-1] == {
                "state": "stopped",
                "code": code,
                "reason": "closed by the test",
            }
            assert await browser.stays_false("window.__sockets.length > 1", seconds=1.5)
            assert peer.connections == 1
        await browser.evaluate("window.__subscription.close()")
    assert browser.errors == []


# --- the README's snippet ----------------------------------------------------------------------

README_HOST = "127.0.0.1:8080"
README_PAGE = """<!doctype html><title>README browser module snippet</title>
<script>
window.__received = [];
window.__info = [];
const realLog = console.log.bind(console);
console.log = (...args) => { window.__received.push(args[0]); realLog(...args); };
console.info = (...args) => window.__info.push(args.join(" "));
const channelId = %s;
</script>
<script type="module">
%s
</script>
"""
PROGRESS = [{"progress": 10}, {"progress": 50}, {"progress": 100}]


def readme_module_snippet() -> str:
    """The ```js block between <!-- snippet:browser-module --> and its closing comment in README.md."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(
        r"<!-- snippet:browser-module -->\s*```js\n(?P<code>.*?)```\s*<!-- /snippet:browser-module -->",
        readme,
        re.DOTALL,
    )
    assert match, "README.md has no ```js block between <!-- snippet:browser-module --> and its closing comment"
    return match.group("code")


@pytest.mark.slow
async def test_readme_module_snippet_gets_its_token_from_the_page_backend_and_receives_progress(
    browser, page_server, shared_server
):
    created = await create_channel(shared_server, "readme-progress-\u00e9")
    channel_id, token = created["channelId"], created["token"]
    code = readme_module_snippet()
    assert code.count(README_HOST) == 2, "the snippet names the server twice (module and socket)"
    code = code.replace(README_HOST, f"{shared_server.host}:{shared_server.port}")  # the only edit
    token_path = f"/progress/{quote(channel_id, safe='')}/token"
    page_server.routes[token_path] = ("application/json", json.dumps({"token": token}).encode())
    page_server.routes["/readme"] = (
        "text/html; charset=utf-8",
        (README_PAGE % (json.dumps(channel_id), code)).encode(),
    )

    await browser.page.goto(page_server.url + "/readme")
    await browser.wait("window.__info.includes('webchannel open ')", "the snippet's subscription to open")
    for message in PROGRESS:
        await publish(shared_server, channel_id, token, json.dumps(message))
    await browser.wait("window.__received.length >= 3", "three progress messages")
    assert await browser.evaluate("window.__received") == PROGRESS
    assert await browser.evaluate("window.__info") == ["webchannel connecting ", "webchannel open "]
    assert page_server.hits[token_path] == 1
    assert browser.errors == []
