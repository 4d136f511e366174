"""Messages queued for a subscriber while its process was busy are written together, intact.

Two ``serve`` processes share a Redis server. The subscriber's process is stopped (SIGSTOP)
while the other takes a burst of publishes, so on SIGCONT it reads them all from Redis at
once and every subscriber has many messages queued: they go out as several frames per write.
"""

from __future__ import annotations

import contextlib
import signal

import httpx

from tests.e2e.helpers import (
    closed_with,
    create_channel,
    http_client,
    metric_value,
    metrics_text,
    publish,
    raw_websocket_with_receive_buffer,
    recv_binary,
    subscribe,
)
from tests.harness import ServerProcess
from tests.waiting import eventually

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000, 3, 100]
"""Payload sizes around the WebSocket header's length encodings (7-bit, 16-bit, 64-bit)."""


def bodies(count: int) -> list[bytes]:
    return [bytes([i % 251]) * SIZES[i % len(SIZES)] + i.to_bytes(4, "big") for i in range(count)]


async def publish_while_stopped(
    client: httpx.AsyncClient,
    publisher: ServerProcess,
    stopped: ServerProcess,
    channel_id: str,
    token: str,
    burst: list[bytes],
) -> None:
    """Publish ``burst`` through ``publisher`` while ``stopped``'s process does not run (its sockets
    still take data), each answered 204."""
    stopped.signal(signal.SIGSTOP)
    try:
        for body in burst:
            response = await publish(client, publisher.url, channel_id, body, token=token)
            assert response.status_code == 204, response.text
    finally:
        stopped.signal(signal.SIGCONT)


def counter(server: ServerProcess, name: str, labels: dict[str, str] | None = None) -> float:
    return metric_value(metrics_text(server.url), name, labels) or 0.0


async def test_a_burst_queued_while_the_process_was_stopped_arrives_whole_and_in_order(
    redis_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = redis_pair
    channel_id, token = create_channel(a.url, "batched-burst")
    burst = bodies(120)
    async with contextlib.AsyncExitStack() as stack, http_client() as client:
        sockets = [await stack.enter_async_context(subscribe(b.url, channel_id, token)) for _ in range(3)]
        sent_before = counter(b, "webchannel_messages_sent_total")
        await publish_while_stopped(client, a, b, channel_id, token, burst)
        for ws in sockets:
            assert [await recv_binary(ws) for _ in burst] == burst
        await eventually(
            lambda: counter(b, "webchannel_messages_sent_total") - sent_before == len(burst) * len(sockets),
            10,
            "every frame written to be counted as sent",
        )


async def test_a_reader_that_stopped_reading_is_closed_with_4008_and_every_message_is_accounted_for(
    redis_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = redis_pair
    channel_id, token = create_channel(a.url, "batched-stalled")
    burst = [bytes([i % 251]) * 60_000 for i in range(150)]  # 9 MB: far past the 4 MiB bound
    stalled = raw_websocket_with_receive_buffer(b.url, channel_id, token, rcvbuf=4096)
    try:
        async with subscribe(b.url, channel_id, token) as reader, http_client() as client:
            sent_before = counter(b, "webchannel_messages_sent_total")
            errors_before = counter(b, "webchannel_message_send_errors_total")
            closed_before = counter(b, "webchannel_websocket_closed_total", {"code": "4008"})
            await publish_while_stopped(client, a, b, channel_id, token, burst)
            for expected in burst:  # the reader is not held back by the stalled socket
                assert await recv_binary(reader, 20) == expected

            def accounted() -> bool:
                sent = counter(b, "webchannel_messages_sent_total") - sent_before
                errors = counter(b, "webchannel_message_send_errors_total") - errors_before
                return sent + errors == 2 * len(burst)

            await eventually(accounted, 20, "every message to be sent or counted as a send error")
            assert counter(b, "webchannel_websocket_closed_total", {"code": "4008"}) == closed_before + 1
            assert counter(b, "webchannel_message_send_errors_total") > errors_before
            assert reader.close_code is None
    finally:
        stalled.close()


async def test_the_reader_sees_the_close_code_after_the_frames_written_before_it(
    redis_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = redis_pair
    channel_id, token = create_channel(a.url, "batched-then-closed")
    burst = bodies(40)
    async with subscribe(b.url, channel_id, token) as ws, http_client() as client:
        await publish_while_stopped(client, a, b, channel_id, token, burst)
        url = f"{a.url}/webchannel/v1/channels/{channel_id}"
        response = await client.delete(url, headers={"authorization": f"Bearer {token}"})
        assert response.status_code == 204, response.text
        assert [await recv_binary(ws) for _ in burst] == burst
        assert await closed_with(ws) == 4000
