"""Publishers slow down to the pace of delivery instead of overrunning a subscriber (issue 4 §4)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from pathlib import Path

import pytest
import websockets

from tests.e2e.helpers import create_channel, http_client, publish, subscribe
from tests.harness import base_config, serving, timeout

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PUBLISHERS = 16
SECONDS = 2.0
# Room for about 60 small messages: without backpressure, 16 concurrent publishers overrun
# the subscriber's backlog within milliseconds and it is closed with 4008.
SMALL_BACKLOG = {"server": {"max_backlog_bytes": 16384}, "channel": {"max_message_size": 1024}}


async def test_concurrent_publishers_wait_for_a_subscriber_that_reads_as_fast_as_it_can(tmp_path: Path) -> None:
    with serving(tmp_path, base_config(**SMALL_BACKLOG)) as server:
        channel_id, token = create_channel(server.url)
        accepted = [0] * PUBLISHERS
        received: dict[int, int] = {}

        async with subscribe(server.url, channel_id, token) as ws, http_client() as client:
            deadline = time.monotonic() + SECONDS

            async def publisher(number: int) -> None:
                while time.monotonic() < deadline:
                    payload = struct.pack("!II", number, accepted[number]).ljust(100, b".")
                    response = await publish(client, server.url, channel_id, payload, token=token)
                    assert response.status_code == 204, response.text
                    accepted[number] += 1

            async def read_one() -> None:
                try:
                    message = await ws.recv()
                except websockets.ConnectionClosed as exc:
                    pytest.fail(f"the subscriber was closed with {exc.rcvd}, after {received}")
                number, seq = struct.unpack("!II", message[:8])
                assert seq == received.get(number, 0), f"publisher {number}: got {seq}"
                received[number] = seq + 1

            async def read_forever() -> None:
                while True:
                    await read_one()

            reading = asyncio.create_task(read_forever())  # reads as fast as it can, alongside
            await asyncio.gather(*(publisher(n) for n in range(PUBLISHERS)))
            reading.cancel()  # websockets' recv() may be cancelled without losing a message
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            async with asyncio.timeout(timeout(10)):
                while sum(received.values()) < sum(accepted):
                    await read_one()

        assert sum(accepted) > PUBLISHERS * 10, f"too few publishes to prove anything: {accepted}"
        assert [received.get(n, 0) for n in range(PUBLISHERS)] == accepted
