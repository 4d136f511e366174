"""Chromium's own ``EventSource`` against a real ``manage.py serve``: a multi-line UTF-8 payload
arrives exactly, a binary one as its base64, a refused token fails the stream for good.

The page is ``about:blank`` (an opaque origin), so the stream is a cross-origin request: the
server runs with ``server.cors_allow_any_origin``. Launch and skip rules are those of
:mod:`tests.browser.test_browser`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.browser.test_browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from tests.harness import API_KEY, ServerProcess, base_config, serving, timeout

pytestmark = pytest.mark.slow

RECORDER = """
window.__events = [];
window.__state = [];
window.openStream = (url) => {
  const source = new EventSource(url);
  window.__source = source;
  source.onopen = () => window.__state.push("open");
  source.onerror = () => window.__state.push("error:" + source.readyState);
  source.onmessage = (e) => window.__events.push({type: e.type, data: e.data});
  source.addEventListener("binary", (e) => window.__events.push({
    type: e.type, data: e.data, bytes: Array.from(Uint8Array.from(atob(e.data), (c) => c.charCodeAt(0))),
  }));
};
"""


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = base_config(server={"cors_allow_any_origin": True})
    with serving(tmp_path_factory.mktemp("eventsource"), config) as server:
        yield server


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.set_content("<!doctype html><title>webchannel EventSource test</title>")
            await page.add_script_tag(content=RECORDER)
            page.errors = errors  # type: ignore[attr-defined]  # the page's errors, for the tests to check
            yield page
        finally:
            await browser.close()


async def wait_in_page(page: Any, expression: str, what: str, seconds: float = 10) -> None:
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        await page.wait_for_function(expression, timeout=timeout(seconds) * 1000)
    except PlaywrightTimeout:
        state = await page.evaluate("({state: window.__state, events: window.__events})")
        raise AssertionError(f"timed out waiting for {what}; page state {state}, errors {page.errors}") from None


async def create_channel(server: ServerProcess) -> tuple[str, str]:
    async with httpx.AsyncClient(timeout=timeout(10)) as client:
        response = await client.post(f"{server.url}/webchannel/v1/channels", headers={"x-api-key": API_KEY}, json={})
    assert response.status_code == 200, response.text
    return response.json()["channelId"], response.json()["token"]


def events_url(server: ServerProcess, channel_id: str, token: str) -> str:
    return f"{server.url}/webchannel/v1/channels/{quote(channel_id, safe='')}/events?access_token={quote(token)}"


async def publish(server: ServerProcess, channel_id: str, token: str, data: bytes) -> None:
    async with httpx.AsyncClient(timeout=timeout(10)) as client:
        response = await client.post(
            f"{server.url}/webchannel/v1/channels/{quote(channel_id, safe='')}",
            headers={"authorization": f"Bearer {token}"},
            content=data,
        )
    assert response.status_code == 204, response.text


MULTI_LINE = "line one\nline two \u2713\n\n  indented \U0001f680\n"
BINARY = b"\x00\xff\xfe\r\nnot text"


async def test_eventsource_receives_a_multi_line_utf8_payload_exactly_and_binary_as_base64(page, cors_server):
    channel_id, token = await create_channel(cors_server)
    await page.evaluate(f"window.openStream({json.dumps(events_url(cors_server, channel_id, token))})")
    await wait_in_page(page, "window.__state.includes('open')", "the EventSource to open")

    await publish(cors_server, channel_id, token, MULTI_LINE.encode())
    await publish(cors_server, channel_id, token, BINARY)
    await publish(cors_server, channel_id, token, b"")
    await wait_in_page(page, "window.__events.length >= 3", "three events")

    events = await page.evaluate("window.__events")
    assert events[0] == {"type": "message", "data": MULTI_LINE}
    assert events[1] == {"type": "binary", "data": base64.b64encode(BINARY).decode(), "bytes": list(BINARY)}
    assert events[2] == {"type": "message", "data": ""}
    assert await page.evaluate("window.__state") == ["open"]
    assert page.errors == []


async def test_eventsource_with_a_refused_token_fails_without_events(page, cors_server):
    channel_id, _ = await create_channel(cors_server)
    _, other_token = await create_channel(cors_server)
    await page.evaluate(f"window.openStream({json.dumps(events_url(cors_server, channel_id, other_token))})")
    # A non-200 answer fails the EventSource for good: readyState CLOSED (2), no reconnect.
    await wait_in_page(page, "window.__state.includes('error:2')", "the EventSource to fail")
    assert "open" not in await page.evaluate("window.__state")
    assert await page.evaluate("window.__events") == []
