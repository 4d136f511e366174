"""Concurrent publishers never overrun a subscriber that reads as fast as it can.

Sixteen publishers at once put more messages in the subscriber's backlog than the layer lets
pile up (``PRESSURE_MESSAGES``), so publishes wait for it to drain (the layer's tests in
``tests/inprocess/test_backpressure.py`` pin down when a wait starts and ends). End to end, the
subscriber must never be closed as slow (4008), must get every accepted message in order, and
no publish may sit out the whole backpressure cap (``PRESSURE_WAIT_SECONDS``): that happens
only if the wait ignores the subscriber catching up.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from pathlib import Path
from typing import cast

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from channels_api.layers.relay import PRESSURE_WAIT_SECONDS
from tests.e2e.helpers import create_channel, http_client, publish, subscribe
from tests.harness import base_config, serving, timeout

pytestmark = pytest.mark.slow

PUBLISHERS = 16
SECONDS = 2.0
# Room for about 60 small messages: more than the publishers can have in flight on top of the
# backlog's wait threshold, so waiting publishers keep the subscriber from being closed.
SMALL_BACKLOG = {"server": {"max_backlog_bytes": 16384}, "channel": {"max_message_size": 1024}}
# Not scaled by timeout(): the wrong wait this rules out is the server's fixed cap, and a wait
# that ends when the subscriber catches up lasts milliseconds (scheduling noise on a loaded
# 2-core machine reaches about a second).
SLOWEST_PUBLISH_SECONDS = PRESSURE_WAIT_SECONDS


async def test_concurrent_publishers_never_overrun_a_subscriber_that_reads_as_fast_as_it_can(tmp_path: Path) -> None:
    with serving(tmp_path, base_config(**SMALL_BACKLOG)) as server:
        channel_id, token = create_channel(server.url)
        accepted = [0] * PUBLISHERS
        received: dict[int, int] = {}
        slowest_publish = 0.0

        async def publisher(client: httpx.AsyncClient, number: int, deadline: float) -> None:
            nonlocal slowest_publish
            while time.monotonic() < deadline:
                payload = struct.pack("!II", number, accepted[number]).ljust(100, b".")
                started = time.monotonic()
                response = await publish(client, server.url, channel_id, payload, token=token)
                slowest_publish = max(slowest_publish, time.monotonic() - started)
                assert response.status_code == 204, response.text
                accepted[number] += 1

        async def read_one(ws: ClientConnection) -> None:
            try:
                message = await ws.recv()
            except websockets.ConnectionClosed as exc:
                pytest.fail(f"the subscriber was closed with {exc.rcvd}, after {received}")
            number, seq = struct.unpack("!II", cast(bytes, message)[:8])
            assert seq == received.get(number, 0), f"publisher {number}: got {seq}"
            received[number] = seq + 1

        async def read_forever(ws: ClientConnection) -> None:
            while True:
                await read_one(ws)

        async with subscribe(server.url, channel_id, token) as ws, http_client() as client:
            reading = asyncio.create_task(read_forever(ws))  # reads as fast as it can, alongside
            deadline = time.monotonic() + SECONDS
            try:
                await asyncio.gather(*(publisher(client, number, deadline) for number in range(PUBLISHERS)))
            finally:
                reading.cancel()  # websockets' recv() may be cancelled without losing a message
                with contextlib.suppress(asyncio.CancelledError):
                    await reading
            async with asyncio.timeout(timeout(10)):
                while sum(received.values()) < sum(accepted):
                    await read_one(ws)

        assert sum(accepted) > PUBLISHERS * 10, f"too few publishes to prove anything: {accepted}"
        assert [received.get(n, 0) for n in range(PUBLISHERS)] == accepted
        assert slowest_publish < SLOWEST_PUBLISH_SECONDS, (
            f"a publish took {slowest_publish:.2f}s: it waited out the cap instead of the subscriber"
        )
