"""Headless Chromium passes its token as a WebSocket subprotocol, out of the URL.

``new WebSocket(url, ["webchannel", "webchannel.bearer." + token])``: the socket opens with
``ws.protocol === "webchannel"`` and receives what is published; a bad token never opens.
Skipped without /usr/bin/chromium unless WEBCHANNEL_REQUIRE_PROGRAMS=1 (see tests/programs.py).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest

from tests.browser.test_browser import Page, create_channel, wait_in_page
from tests.harness import ServerProcess, timeout

pytestmark = pytest.mark.slow

OPEN_WITH_SUBPROTOCOL = """
window.__ws = new WebSocket(url, ["webchannel", "webchannel.bearer." + token]);
window.__ws.binaryType = "arraybuffer";
window.__ws.onmessage = (m) => window.__received.push(new TextDecoder().decode(m.data));
"""


async def open_socket(page: Page, server: ServerProcess, channel_id: str, token: str) -> None:
    url = f"{server.ws_url}/webchannel/v1/channels/{quote(channel_id, safe='')}"
    await page.page.add_script_tag(content=f"const url = {json.dumps(url)};\nconst token = {json.dumps(token)};")
    await page.page.add_script_tag(content=OPEN_WITH_SUBPROTOCOL)


@pytest.mark.parametrize("which", ["token", "subscribeToken"])
async def test_chromium_subscribes_with_the_token_as_a_subprotocol(page, shared_server, which):
    created = await create_channel(shared_server)
    await open_socket(page, shared_server, created["channelId"], created[which])
    await wait_in_page(page, "window.__events.includes('open')", "the WebSocket to open")
    assert await page.evaluate("window.__ws.protocol") == "webchannel"
    assert "access_token" not in await page.evaluate("window.__ws.url")

    async with httpx.AsyncClient(timeout=timeout(10)) as client:
        response = await client.post(
            f"{shared_server.url}/webchannel/v1/channels/{quote(created['channelId'], safe='')}",
            headers={"Authorization": f"Bearer {created['token']}"},
            content="héllo".encode(),
        )
    assert response.status_code == 204, response.text
    await wait_in_page(page, "window.__received.length >= 1", "the published message in the page")
    assert await page.evaluate("window.__received") == ["héllo"]
    assert page.errors == []
    assert created["token"] not in shared_server.output()
    assert created["subscribeToken"] not in shared_server.output()


async def test_chromium_with_a_bad_subprotocol_token_never_opens(page, shared_server):
    created = await create_channel(shared_server)
    other = await create_channel(shared_server)
    await open_socket(page, shared_server, created["channelId"], other["token"])
    await wait_in_page(page, "window.__events.some((e) => e.startsWith('close:'))", "the WebSocket to close")
    events = await page.evaluate("window.__events")
    assert "open" not in events, events
    assert "error" in events, events
