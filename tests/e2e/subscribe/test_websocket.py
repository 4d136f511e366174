"""Subscriber sockets over real WebSockets: receive-only, keepalive, the gauge.

- A data frame from the client closes the socket with 4003 (the documented 4xxx for 1003).
- Keepalive pings go out every ``server.ping_interval``; a peer that never answers is dropped
  after ``server.ping_timeout``.
- ``webchannel_users_connected`` counts open subscriber sockets and returns to its baseline
  however they end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets

from tests.e2e.helpers import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    RawWebSocket,
    channel_url,
    closed_with,
    create_channel,
    gauge_equals,
    http_client,
    metric_value,
    metrics_text,
    publish,
    recv_binary,
    settled_users_connected,
    subscribe,
    users_connected,
)
from tests.harness import ServerProcess, base_config, serving, timeout, wait_for

PING_INTERVAL = 1
PING_TIMEOUT = 2
# Daphne checks its sockets' timers every 2 s, so a ping may go out up to 2 s late.
CHECK_PERIOD = 2
SLACK = 4


@pytest.fixture(scope="module")
def ping_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = base_config(server={"ping_interval": PING_INTERVAL, "ping_timeout": PING_TIMEOUT})
    with serving(tmp_path_factory.mktemp("ping"), config) as server:
        yield server


def received_total(server: ServerProcess) -> float:
    return metric_value(metrics_text(server.url), "webchannel_websocket_messages_received_total") or 0.0


@pytest.mark.parametrize("frame", [pytest.param("hello", id="text"), pytest.param(b"\x00\x01", id="binary")])
async def test_a_data_frame_from_the_client_closes_the_socket_with_4003(
    shared_server: ServerProcess, frame: str | bytes
) -> None:
    channel_id, token = create_channel(shared_server.url)
    baseline = await asyncio.to_thread(settled_users_connected, shared_server.url)
    received_before = await asyncio.to_thread(received_total, shared_server)
    async with subscribe(shared_server.url, channel_id, token) as ws:
        await gauge_equals(shared_server.url, baseline + 1)
        await ws.send(frame)
        assert await closed_with(ws) == 4003
    await gauge_equals(shared_server.url, baseline)
    assert await asyncio.to_thread(received_total, shared_server) >= received_before + 1


async def test_a_socket_closed_for_sending_data_no_longer_receives_while_others_do(
    shared_server: ServerProcess,
) -> None:
    channel_id, token = create_channel(shared_server.url)
    async with (
        subscribe(shared_server.url, channel_id, token) as talker,
        subscribe(shared_server.url, channel_id, token) as listener,
        http_client() as client,
    ):
        await talker.send(b"not allowed")
        assert await closed_with(talker) == 4003
        response = await publish(client, shared_server.url, channel_id, b"after the close", token=token)
        assert response.status_code == 204, response.text
        assert await recv_binary(listener) == b"after the close"


@pytest.mark.slow
def test_server_sends_keepalive_pings_and_a_peer_that_answers_stays_connected(ping_server: ServerProcess) -> None:
    """A raw client sees ping frames (opcode 0x9), answers each with a pong, and is kept well past
    ``ping_interval + ping_timeout``: it still gets published messages."""
    channel_id, token = create_channel(ping_server.url)
    ws = RawWebSocket.open(ping_server.url, channel_id, token)
    try:
        started = time.monotonic()
        pings = 0
        while pings < 3:
            opcode, payload = ws.read_frame(PING_INTERVAL + CHECK_PERIOD + SLACK)
            assert opcode == OP_PING, f"expected a ping, got opcode {opcode:#x}: {payload!r}"
            pings += 1
            ws.send_frame(OP_PONG, payload)
        assert time.monotonic() - started > PING_TIMEOUT  # longer than a silent peer survives
        publish_sync(ping_server, channel_id, token, b"still here")
        while True:
            opcode, payload = ws.read_frame(10)
            if opcode == OP_PING:
                ws.send_frame(OP_PONG, payload)
                continue
            assert opcode == OP_BINARY, f"opcode {opcode:#x}: {payload!r}"
            assert payload == b"still here"
            break
    finally:
        ws.close()


@pytest.mark.slow
def test_a_peer_that_never_answers_pings_is_dropped(ping_server: ServerProcess) -> None:
    channel_id, token = create_channel(ping_server.url)
    baseline = settled_users_connected(ping_server.url)
    ws = RawWebSocket.open(ping_server.url, channel_id, token)
    try:
        connected_at = time.monotonic()
        wait_gauge(ping_server, baseline + 1)
        bound = PING_INTERVAL + CHECK_PERIOD + PING_TIMEOUT + SLACK
        frames: list[int] = []
        with contextlib.suppress(ConnectionError):  # the server may drop TCP without a close frame
            while True:
                opcode, _ = ws.read_frame(bound)  # never answered
                frames.append(opcode)
                if opcode == OP_CLOSE:
                    break
        elapsed = time.monotonic() - connected_at
        assert OP_PING in frames, f"no ping before the drop: {frames}"
        assert elapsed < timeout(bound), f"dropped after {elapsed:.1f}s"
        wait_gauge(ping_server, baseline)
    finally:
        ws.close()


async def test_many_subscribers_connecting_and_disconnecting_leave_the_gauge_at_its_baseline(
    shared_server: ServerProcess,
) -> None:
    channel_id, token = create_channel(shared_server.url)
    other_id, other_token = create_channel(shared_server.url)
    baseline = await asyncio.to_thread(settled_users_connected, shared_server.url)
    async with contextlib.AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(subscribe(shared_server.url, channel_id, token)) for _ in range(20)
        ] + [await stack.enter_async_context(subscribe(shared_server.url, other_id, other_token)) for _ in range(10)]
        raw = [await asyncio.to_thread(RawWebSocket.open, shared_server.url, channel_id, token) for _ in range(5)]
        try:
            await gauge_equals(shared_server.url, baseline + 35)
            # Five go away with a clean close handshake, five by dropping TCP, five by sending data.
            for ws in sockets[:5]:
                await ws.close()
            for raw_ws in raw:
                raw_ws.close()
            for ws in sockets[5:10]:
                await ws.send(b"x")
            for ws in sockets[5:10]:
                assert await closed_with(ws) == 4003
            await gauge_equals(shared_server.url, baseline + 20)
        finally:
            for raw_ws in raw:
                raw_ws.close()
    await gauge_equals(shared_server.url, baseline)
    # Refused handshakes never count.
    with pytest.raises(websockets.InvalidStatus):
        async with subscribe(shared_server.url, channel_id, "garbage"):
            pass
    assert await asyncio.to_thread(users_connected, shared_server.url) == baseline


def publish_sync(server: ServerProcess, channel_id: str, token: str, data: bytes) -> None:
    response = httpx.post(
        channel_url(server.url, channel_id),
        content=data,
        headers={"authorization": f"Bearer {token}"},
        timeout=timeout(10),
    )
    assert response.status_code == 204, response.text


def wait_gauge(server: ServerProcess, expected: float, seconds: float = 10) -> None:
    wait_for(lambda: users_connected(server.url) == expected, seconds, f"webchannel_users_connected == {expected}")
