"""Slow subscribers cannot grow the server's memory.

A subscriber that completes the handshake and then stops reading is closed with 4008 ("too
slow") once more than ``server.max_backlog_bytes`` wait for it, while ~100 MB are published to
its channel; reading again, it gets a prefix of the messages and then the close frame. The other
subscriber of the channel receives every message, complete and in order; the server's resident
memory (``/proc/<pid>/status``) grows by less than the bound plus a constant. Checked with the
in-process layer and with the Redis layer. A subscriber that keeps up is never closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    KeepAlivePublisher,
    RssWatch,
    create_channel,
    gauge_equals,
    http_client,
    metric_value,
    metrics_text,
    publish,
    raw_websocket_with_receive_buffer,
    recv_binary,
    subscribe,
)
from tests.harness import RedisServer, ServerProcess, base_config, serving, timeout
from tests.waiting import eventually

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
MAX_BACKLOG_BYTES = 4 * MIB
MESSAGE_SIZE = 512 * 1024
MESSAGE_COUNT = 200  # 100 MiB in all
RSS_GROWTH_LIMIT = 40 * MIB
WARMUP_MESSAGES = 4
# The subscriber that reads is at most this many messages behind the publisher (1.5 MiB, well
# under the backlog bound): it is a reader that keeps up, which is what the test is about.
READER_MAX_LAG = 3
STALLED_RCVBUF = 4096
TOO_SLOW = 4008
TIGHT_BACKLOG_BYTES = 16 * 1024
QUICK_MESSAGE_SIZE = 2048

_BLOCK = bytes(range(256)) * (MESSAGE_SIZE // 256)


def payload(i: int) -> bytes:
    """Message ``i``: 512 KiB, numbered at both ends so a truncated or reordered one shows."""
    tag = struct.pack("!I", i)
    return tag + _BLOCK[8:] + tag


def closed_too_slow(server: ServerProcess) -> float:
    text = metrics_text(server.url)
    return metric_value(text, "webchannel_websocket_closed_total", {"code": str(TOO_SLOW)}) or 0.0


def slow_config(**sections: dict[str, object]) -> dict[str, dict[str, object]]:
    config = base_config(server={"max_backlog_bytes": MAX_BACKLOG_BYTES}, **sections)
    return config


@pytest.fixture(scope="module")
def memory_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serving(tmp_path_factory.mktemp("slow-subscriber"), slow_config()) as server:
        yield server


async def run_stalled_subscriber_scenario(server: ServerProcess, label: str) -> None:
    channel_id, token = create_channel(server.url)
    async with http_client() as client, subscribe(server.url, channel_id, token) as reader:
        # Warm up the publish path at full message size before the baseline is taken.
        for i in range(WARMUP_MESSAGES):
            response = await publish(client, server.url, channel_id, payload(i), token=token)
            assert response.status_code == 204, response.text
            assert await recv_binary(reader) == payload(i)
        await gauge_equals(server.url, 1)
        closes_before = await asyncio.to_thread(closed_too_slow, server)

        stalled = await asyncio.to_thread(
            raw_websocket_with_receive_buffer, server.url, channel_id, token, STALLED_RCVBUF
        )
        try:
            await gauge_equals(server.url, 2)
            watch = RssWatch(server.pid).start()
            try:
                received: list[int] = []
                window = asyncio.Semaphore(READER_MAX_LAG)

                async def read_everything() -> None:
                    for i in range(MESSAGE_COUNT):
                        message = await recv_binary(reader, 30)
                        assert len(message) == MESSAGE_SIZE, f"message {i} has {len(message)} bytes"
                        assert message == payload(i), f"message {i} differs (tag {message[:4].hex()})"
                        received.append(i)
                        window.release()

                reading = asyncio.create_task(read_everything())
                try:
                    for i in range(MESSAGE_COUNT):
                        async with asyncio.timeout(timeout(30)):
                            await window.acquire()
                        if reading.done():
                            break  # the reader failed: its exception is raised below
                        response = await publish(client, server.url, channel_id, payload(i), token=token)
                        assert response.status_code == 204, f"publish {i}: {response.status_code} {response.text}"
                    async with asyncio.timeout(timeout(60)):
                        await reading
                finally:
                    reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reading
            finally:
                watch.stop()
            print(watch.report(f"{label}: {MESSAGE_COUNT} x {MESSAGE_SIZE // 1024} KiB past a stalled subscriber"))
            assert received == list(range(MESSAGE_COUNT))

            # The stalled subscriber was closed as too slow, and only it. Its close frame waits
            # behind what it has not read: reading now, it gets a prefix of the messages, then 4008.
            await eventually(
                lambda: asyncio.to_thread(lambda: closed_too_slow(server) >= closes_before + 1), 10, "a 4008 close"
            )
            frames, code = await asyncio.to_thread(stalled.read_until_close, 30)
            assert code == TOO_SLOW
            assert frames == [payload(i) for i in range(len(frames))]
            print(f"[slow] {label}: the stalled socket read {len(frames)} messages, then close {code}")
            await gauge_equals(server.url, 1)
            assert await asyncio.to_thread(closed_too_slow, server) == closes_before + 1
        finally:
            stalled.close()

        # The reader is still subscribed and still served.
        response = await publish(client, server.url, channel_id, b"after", token=token)
        assert response.status_code == 204
        assert await recv_binary(reader) == b"after"

    assert watch.growth < RSS_GROWTH_LIMIT, watch.report(label)
    assert "Traceback" not in server.output()


async def test_stalled_subscriber_is_closed_with_4008_and_memory_stays_bounded(memory_server: ServerProcess) -> None:
    await run_stalled_subscriber_scenario(memory_server, "in-process layer")


async def test_stalled_subscriber_is_closed_with_4008_and_memory_stays_bounded_with_redis(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with serving(tmp_path, slow_config(redis={"url": redis_server.url}), name="redis-slow") as server:
        await run_stalled_subscriber_scenario(server, "redis layer")


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The smallest backlog bound the configuration allows, so an over-eager limit would show."""
    config = base_config(
        server={"max_backlog_bytes": TIGHT_BACKLOG_BYTES}, channel={"max_message_size": TIGHT_BACKLOG_BYTES}
    )
    with serving(tmp_path_factory.mktemp("tight-backlog"), config) as server:
        yield server


async def test_subscriber_that_keeps_reading_is_not_closed_during_two_thousand_quick_publishes(
    tight_server: ServerProcess,
) -> None:
    """2,000 sequential 2 KiB publishes (250 times the 16 KiB backlog bound in all) to a subscriber
    that reads as fast as it can: it gets every one, in order, and is never closed as too slow."""
    server = tight_server
    channel_id, token = create_channel(server.url)
    count = 2000
    expected = [(b"quick %06d " % i).ljust(QUICK_MESSAGE_SIZE, b".") for i in range(count)]
    closes_before = await asyncio.to_thread(closed_too_slow, server)
    async with http_client() as client, subscribe(server.url, channel_id, token) as reader:

        async def read_all() -> list[bytes]:
            return [await recv_binary(reader, 30) for _ in range(count)]

        def publish_all() -> None:
            with KeepAlivePublisher(server, channel_id, token) as publisher:
                for i, message in enumerate(expected):
                    status = publisher.publish(message)
                    assert status == 204, f"publish {i} answered {status}"

        reading = asyncio.create_task(read_all())
        try:
            # Published from a thread over one keep-alive connection, so the reader has this
            # event loop to itself and the publishes come as fast as the server answers them.
            await asyncio.to_thread(publish_all)
            async with asyncio.timeout(timeout(30)):
                received = await reading
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
        assert received == expected
        response = await publish(client, server.url, channel_id, b"still open", token=token)
        assert response.status_code == 204
        assert await recv_binary(reader) == b"still open"
    assert await asyncio.to_thread(closed_too_slow, server) == closes_before
    assert metric_value(metrics_text(server.url), "webchannel_message_send_errors_total") == 0
