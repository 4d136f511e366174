"""The README's browser snippet, verbatim, in headless Chromium against a real `manage.py serve`.

Chromium is the Debian package at /usr/bin/chromium; Playwright never downloads a browser.
Without it the tests are skipped, unless WEBCHANNEL_REQUIRE_PROGRAMS=1 (CI), where they fail.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests import programs
from tests.harness import API_KEY, REPO, ServerProcess, timeout

pytestmark = pytest.mark.slow

CHROMIUM = Path(programs.PROGRAMS["chromium"].path or "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
README_HOST = "ws://127.0.0.1:8080"
PROGRESS = [{"progress": 10}, {"progress": 50}, {"progress": 100}]

# Installed before the snippet: records the socket's events and what the snippet logs.
INSTRUMENT = """
window.__received = [];
window.__events = [];
window.__console = [];
const realLog = console.log.bind(console);
console.log = (...args) => { window.__received.push(args[0]); realLog(...args); };
const RealWebSocket = window.WebSocket;
window.WebSocket = class extends RealWebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("open", () => window.__events.push("open"));
    this.addEventListener("error", () => window.__events.push("error"));
    this.addEventListener("message", () => window.__events.push("message"));
    this.addEventListener("close", (e) => window.__events.push("close:" + e.code));
  }
};
"""


def readme_snippet() -> str:
    """The ```js block between <!-- snippet:browser --> and <!-- /snippet:browser --> in README.md."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(
        r"<!-- snippet:browser -->\s*```js\n(?P<code>.*?)```\s*<!-- /snippet:browser -->", readme, re.DOTALL
    )
    assert match, "README.md has no ```js block between <!-- snippet:browser --> and <!-- /snippet:browser -->"
    return match.group("code")


def snippet_for(server: ServerProcess) -> str:
    """The snippet with its hard-coded host:port pointed at ``server`` (the only edit made)."""
    code = readme_snippet()
    assert code.count(README_HOST) == 1, f"the snippet should connect to {README_HOST} once:\n{code}"
    return code.replace(README_HOST, server.ws_url)


def require_browser() -> None:
    """Skip the calling test without Debian's Chromium (fail it in CI, where it must run)."""
    programs.require("chromium")


@dataclass
class Page:
    """A Playwright page and the script errors it reported."""

    page: Any
    errors: list[str] = field(default_factory=list)

    async def evaluate(self, expression: str) -> Any:
        return await self.page.evaluate(expression)


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """A fresh about:blank page in headless Chromium, instrumented before any snippet runs."""
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = Page(await browser.new_page())
            page.page.on("pageerror", lambda error: page.errors.append(f"pageerror: {error}"))
            await page.page.set_content("<!doctype html><title>webchannel browser test</title>")
            await page.page.add_script_tag(content=INSTRUMENT)
            yield page
        finally:
            await browser.close()


async def wait_in_page(page: Page, expression: str, what: str, seconds: float = 10) -> None:
    """Wait until ``expression`` is truthy in the page, at most ``timeout(seconds)``."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        await page.page.wait_for_function(expression, timeout=timeout(seconds) * 1000)
    except PlaywrightTimeout:
        state = await page.evaluate("({events: window.__events, received: window.__received})")
        raise AssertionError(f"timed out waiting for {what}; page state {state}, page errors {page.errors}") from None


async def create_channel(server: ServerProcess, channel_id: str | None = None) -> dict[str, str]:
    body = {} if channel_id is None else {"channelId": channel_id}
    async with httpx.AsyncClient(timeout=timeout(10)) as client:
        response = await client.post(f"{server.url}/webchannel/v1/channels", headers={"x-api-key": API_KEY}, json=body)
    assert response.status_code == 200, response.text
    created = response.json()
    if channel_id is not None:
        assert created["channelId"] == channel_id
    return created


async def run_snippet(page: Page, server: ServerProcess, channel_id: str, token: str) -> None:
    """Define ``channelId`` and ``token`` as the README assumes, then run its snippet as is."""
    await page.page.add_script_tag(
        content=f"const channelId = {json.dumps(channel_id)};\nconst token = {json.dumps(token)};"
    )
    await page.page.add_script_tag(content=snippet_for(server))


def test_readme_snippet_is_extracted_and_only_its_address_changes(shared_server):
    code = readme_snippet()
    assert "new WebSocket(url)" in code
    assert "encodeURIComponent(channelId)" in code
    assert "encodeURIComponent(token)" in code
    edited = snippet_for(shared_server)
    assert edited.replace(shared_server.ws_url, README_HOST) == code


@pytest.mark.parametrize(
    "channel_id", [None, "t\u00e9st-%?&#=+-\U0001f680"], ids=["generated-id", "unicode-and-reserved-chars"]
)
async def test_readme_snippet_receives_three_progress_messages_in_order(page, shared_server, channel_id):
    created = await create_channel(shared_server, channel_id)
    await run_snippet(page, shared_server, created["channelId"], created["token"])
    await wait_in_page(page, "window.__events.includes('open')", "the README snippet's WebSocket to open")

    async with httpx.AsyncClient(timeout=timeout(10)) as client:
        for message in PROGRESS:
            response = await client.post(
                f"{shared_server.url}/webchannel/v1/channels/{quote(created['channelId'], safe='')}",
                headers={"Authorization": f"Bearer {created['token']}"},
                content=json.dumps(message).encode(),
            )
            assert response.status_code == 204, response.text

    await wait_in_page(page, "window.__received.length >= 3", "three progress messages in the page")
    assert await page.evaluate("window.__received") == PROGRESS
    assert await page.evaluate("window.__received.every((m) => typeof m === 'object')")
    assert await page.evaluate("window.__events") == ["open", "message", "message", "message"]
    assert page.errors == []


@pytest.mark.parametrize("wrong", ["other-channel", "bad-signature", "garbage"])
async def test_readme_snippet_is_refused_with_a_wrong_token(page, shared_server, wrong):
    created = await create_channel(shared_server)
    other = await create_channel(shared_server)
    token = {
        "other-channel": other["token"],
        "bad-signature": created["token"].rsplit(".", 1)[0] + "." + other["token"].rsplit(".", 1)[1],
        "garbage": "not-a-token",
    }[wrong]
    await run_snippet(page, shared_server, created["channelId"], token)
    await wait_in_page(page, "window.__events.some((e) => e.startsWith('close:'))", "the WebSocket to close")
    events = await page.evaluate("window.__events")
    assert "open" not in events, events
    assert "message" not in events, events
    assert "error" in events, events
    assert await page.evaluate("window.__received") == []


def test_missing_chromium_skips_unless_the_programs_are_required(monkeypatch, tmp_path):
    missing = programs.Program("chromium", "chromium", path=str(tmp_path / "no-chromium"), purpose="browser tests")
    monkeypatch.setitem(programs.PROGRAMS, "chromium", missing)
    monkeypatch.delenv(programs.REQUIRE_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"chromium is not installed \(Debian package chromium\)"):
        require_browser()
    monkeypatch.setenv(programs.REQUIRE_VARIABLE, "1")
    with pytest.raises(pytest.fail.Exception, match="WEBCHANNEL_REQUIRE_PROGRAMS=1"):
        require_browser()
