"""Every close the server starts carries its code's documented reason phrase.

The README's close-code table gives each code a short reason; a client can show it, and a
proxy's or browser's log says why the socket closed without knowing webchannel's codes. Each
close is triggered as a client meets it: ``DELETE`` (4000), a data frame from the subscriber
(4003), a subscriber that stops reading (4008), a subscribe while Redis is down (4013) and
SIGTERM (1012).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from channels_api.events import CloseCode
from tests.common import API_KEY
from tests.e2e.helpers import (
    channel_url,
    create_channel,
    http_client,
    metric_value,
    metrics_text,
    publish,
    subscribe,
    wait_exit,
    ws_url,
)
from tests.harness import RedisServer, base_config, serving, timeout

pytestmark = pytest.mark.slow

REASONS = {int(code): code.reason for code in CloseCode}
BACKLOG_BYTES = 64 * 1024
MESSAGE = b"x" * 8192


async def closed_with(ws: ClientConnection, seconds: float = 10) -> tuple[int | None, str | None]:
    """Read (and drop) whatever arrives until the server's close frame; its code and reason."""
    async with asyncio.timeout(timeout(seconds)):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as exc:
            if exc.rcvd is None:
                return None, None
            return exc.rcvd.code, exc.rcvd.reason


async def test_closes_started_by_the_application_and_the_server_carry_their_reason(tmp_path: Path) -> None:
    config = base_config(
        server={"max_backlog_bytes": BACKLOG_BYTES, "drain_window": 0.5}, channel={"max_message_size": BACKLOG_BYTES}
    )
    with serving(tmp_path, config) as server:
        async with http_client() as client:
            # 4000: the channel is closed.
            channel_id, token = create_channel(server.url)
            async with subscribe(server.url, channel_id, token) as ws:
                response = await client.delete(channel_url(server.url, channel_id), headers={"x-api-key": API_KEY})
                assert response.status_code == 204, response.text
                assert await closed_with(ws) == (4000, REASONS[4000])

            # 4003: the subscriber sent data.
            async with subscribe(server.url, channel_id, token) as ws:
                await ws.send(b"hello?")
                assert await closed_with(ws) == (4003, REASONS[4003])

            # 4008: the subscriber stopped reading (the client reads nothing more once its queue
            # of one message is full, and the kernel's buffers fill behind it).
            url = ws_url(server.url, channel_id, token)
            async with connect(url, max_queue=1, max_size=None, open_timeout=timeout(10)) as stalled:
                for sent in range(1, 4001):  # bounded: far more than every buffer on the way holds
                    response = await publish(client, server.url, channel_id, MESSAGE, token=token)
                    assert response.status_code == 204, response.text
                    if sent % 20 == 0 and await _closed_4008(server.url):
                        break
                assert await closed_with(stalled, 30) == (4008, REASONS[4008])

            # 1012: the server stops.
            async with subscribe(server.url, channel_id, token) as ws:
                server.signal(signal.SIGTERM)
                assert await closed_with(ws) == (1012, REASONS[1012])
        assert wait_exit(server, 10) == 0, server.output()


async def _closed_4008(base_url: str) -> bool:
    text = await asyncio.to_thread(metrics_text, base_url)
    return bool(metric_value(text, "webchannel_websocket_closed_total", {"code": "4008"}))


async def test_a_subscribe_while_redis_is_down_is_closed_with_4013_and_its_reason(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with serving(tmp_path, base_config(redis={"url": redis_server.url})) as server:
        channel_id, token = create_channel(server.url)
        redis_server.stop()
        async with subscribe(server.url, channel_id, token) as ws:
            assert await closed_with(ws) == (4013, REASONS[4013])
        assert httpx.get(f"{server.url}/healthz", timeout=timeout(5)).status_code == 200
