"""The token as a WebSocket subprotocol, against a real ``manage.py serve`` logging at debug level.

A browser cannot set headers on a WebSocket, and a query parameter puts the token in URLs
(proxy logs, history). ``new WebSocket(url, ["webchannel", "webchannel.bearer." + token])``
keeps it in a header; the server echoes ``webchannel``, never the token-bearing entry, and no
log line of the server (access log, Daphne's and autobahn's debug output) contains the token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.common import expired_token, make_token
from tests.e2e.helpers import (
    create_channel,
    http_client,
    metric_value,
    metrics_text,
    publish,
    recv_binary,
    ws_url,
)
from tests.harness import ServerProcess, base_config, serving, timeout
from tests.waiting import eventually

PREFIX = "webchannel.bearer."


@pytest.fixture(scope="module")
def debug_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server with WC_LOG=debug and the access log on, so that every log line can be searched."""
    config = base_config(server={"access_log": True})
    with serving(tmp_path_factory.mktemp("subprotocol"), config, env={"WC_LOG": "debug"}) as server:
        yield server


@contextlib.asynccontextmanager
async def subscribe_with(
    url: str, protocols: list[str], headers: dict[str, str] | None = None
) -> AsyncIterator[ClientConnection]:
    offered = [Subprotocol(p) for p in protocols]
    async with connect(
        url, subprotocols=offered, additional_headers=headers, open_timeout=timeout(10), max_size=None
    ) as ws:
        yield ws


async def refusal(url: str, protocols: list[str] | None, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a handshake that must be refused."""
    try:
        offered = None if protocols is None else [Subprotocol(p) for p in protocols]
        async with connect(url, subprotocols=offered, additional_headers=headers, open_timeout=timeout(10)):
            pass
    except websockets.InvalidStatus as exc:
        return exc.response.status_code
    raise AssertionError("the handshake was accepted")


def refused(server: ServerProcess, reason: str) -> float:
    return metric_value(metrics_text(server.url), "webchannel_websocket_refused_total", {"reason": reason}) or 0.0


def assert_not_logged(server: ServerProcess, *tokens: str) -> None:
    """Neither a token nor its signature (the part a log might keep when it cuts a line) is in the log."""
    output = server.output()
    for token in tokens:
        assert token not in output
        if token.count(".") == 2:
            assert token.rsplit(".", 1)[1] not in output


async def test_the_server_echoes_webchannel_and_relays_messages(debug_server):
    channel_id, token = create_channel(debug_server.url)
    async with subscribe_with(ws_url(debug_server.url, channel_id), ["webchannel", PREFIX + token]) as ws:
        assert ws.subprotocol == "webchannel"
        assert ws.response is not None
        assert ws.response.headers.get_all("Sec-WebSocket-Protocol") == ["webchannel"]
        async with http_client() as client:
            response = await publish(client, debug_server.url, channel_id, b"\x00hello", token=token)
        assert response.status_code == 204, response.text
        assert await recv_binary(ws) == b"\x00hello"

    def access_line_written() -> bool:
        return f'"WS /webchannel/v1/channels/{channel_id}" disconnected' in debug_server.output()

    await eventually(access_line_written, 10, "the access-log line of the closed socket")
    assert " DEBUG " in debug_server.output()  # the search below covers debug output too
    assert_not_logged(debug_server, token)


async def test_the_subscribe_token_works_as_a_subprotocol(debug_server):
    response = httpx.post(f"{debug_server.url}/webchannel/v1/channels", headers={"x-api-key": "test-api-key"})
    created = response.json()
    url = ws_url(debug_server.url, created["channelId"])
    async with subscribe_with(url, ["webchannel", PREFIX + created["subscribeToken"]]) as ws:
        assert ws.subprotocol == "webchannel"
        async with http_client() as client:
            sent = await publish(client, debug_server.url, created["channelId"], b"m", token=created["token"])
        assert sent.status_code == 204
        assert await recv_binary(ws) == b"m"
    assert_not_logged(debug_server, created["token"], created["subscribeToken"])


async def test_without_webchannel_offered_the_token_still_works_and_nothing_is_echoed(debug_server):
    channel_id, token = create_channel(debug_server.url)
    async with subscribe_with(ws_url(debug_server.url, channel_id), [PREFIX + token]) as ws:
        assert ws.subprotocol is None
        assert ws.response is not None
        assert "Sec-WebSocket-Protocol" not in ws.response.headers


@pytest.mark.parametrize("bad", ["missing", "garbage", "expired", "other-channel", "bad-signature", "empty"])
async def test_a_bad_subprotocol_token_is_refused_like_a_bad_query_token(debug_server, bad):
    channel_id, _ = create_channel(debug_server.url)
    _, other = create_channel(debug_server.url)
    presented = {
        "missing": None,
        "garbage": "not-a-token",
        "expired": expired_token(channel_id),
        "other-channel": other,
        "bad-signature": make_token(channel_id, secret="some-other-secret-0123456789abcdef0123"),
        "empty": "",
    }[bad]
    reason = {"expired": "expired_token", "other-channel": "wrong_channel"}.get(bad, "invalid_token")
    url = ws_url(debug_server.url, channel_id)
    protocols = ["webchannel"] if presented is None else ["webchannel", PREFIX + presented]
    before = await asyncio.to_thread(refused, debug_server, reason)
    status = await refusal(url, protocols)

    query_url = url if presented is None else ws_url(debug_server.url, channel_id, presented)
    query_status = await refusal(query_url, None)
    assert status == query_status == 403

    async def counted_twice() -> bool:
        return await asyncio.to_thread(refused, debug_server, reason) == before + 2

    await eventually(counted_twice, 10, f"two refusals counted under {reason}")
    if presented:
        assert_not_logged(debug_server, presented)


async def test_precedence_header_then_subprotocol_then_query(debug_server):
    channel_id, token = create_channel(debug_server.url)
    bad = "not-a-token"
    url = ws_url(debug_server.url, channel_id)
    # Authorization wins over a bad subprotocol token.
    async with subscribe_with(url, ["webchannel", PREFIX + bad], {"Authorization": f"Bearer {token}"}) as ws:
        assert ws.subprotocol == "webchannel"
    # The subprotocol wins over a bad query token...
    async with subscribe_with(ws_url(debug_server.url, channel_id, bad), ["webchannel", PREFIX + token]) as ws:
        assert ws.subprotocol == "webchannel"
    # ...and a bad subprotocol token is not rescued by a good query token.
    assert await refusal(ws_url(debug_server.url, channel_id, token), ["webchannel", PREFIX + bad]) == 403


def test_debug_log_is_searched_from_a_fresh_file(debug_server):
    """The fixture's log is the whole output of the process (nothing rotated away)."""
    assert Path(debug_server.log_path).stat().st_size > 0
    assert "Listening on TCP address" in debug_server.output()
