"""Honest delivery counters, read from ``/metrics`` of a real server.

``webchannel_messages_sent_total`` counts frames written to a subscriber's socket, not frames
handed to a socket that is already closing; every 4008 close, also the one for a reader that
let the server's write buffer fill, counts the messages that subscriber did not get in
``webchannel_message_send_errors_total``: the one that did not fit and every later one.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterator

import pytest

from tests.e2e.helpers import (
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
from tests.harness import ServerProcess, base_config, serving

MESSAGE_SIZE = 32 * 1024
MAX_BACKLOG_BYTES = 64 * 1024
BURST = 200
TOO_SLOW = 4008

COUNTERS = {
    "sent": ("webchannel_messages_sent_total", None),
    "sent_bytes": ("webchannel_messages_sent_bytes_total", None),
    "errors": ("webchannel_message_send_errors_total", None),
    "closed_4008": ("webchannel_websocket_closed_total", {"code": str(TOO_SLOW)}),
}


def counters(server: ServerProcess) -> dict[str, float]:
    text = metrics_text(server.url)
    return {key: metric_value(text, name, labels) or 0.0 for key, (name, labels) in COUNTERS.items()}


def grown(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in before}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = base_config(server={"max_backlog_bytes": MAX_BACKLOG_BYTES}, channel={"max_message_size": MESSAGE_SIZE})
    with serving(tmp_path_factory.mktemp("counters"), config) as server:
        yield server


async def test_every_written_frame_is_counted_as_sent_with_its_bytes(server: ServerProcess) -> None:
    channel_id, token = create_channel(server.url)
    messages = [b"", b"a", bytes(range(256)) * 8, b"x" * MESSAGE_SIZE]
    async with http_client() as client, subscribe(server.url, channel_id, token) as ws:
        await gauge_equals(server.url, 1)
        before = await asyncio.to_thread(counters, server)
        for data in messages:
            assert (await publish(client, server.url, channel_id, data, token=token)).status_code == 204
            assert await recv_binary(ws) == data
        after = await asyncio.to_thread(counters, server)
    assert grown(before, after) == {
        "sent": len(messages),
        "sent_bytes": sum(map(len, messages)),
        "errors": 0,
        "closed_4008": 0,
    }


@pytest.mark.slow
async def test_a_4008_for_a_full_write_buffer_counts_each_message_not_written_as_an_error(
    server: ServerProcess,
) -> None:
    """A reader and a subscriber that stops reading share a channel. While the stalled one's
    socket is still open (closing, its close frame waiting behind what it has not read), the
    whole burst is published; then it reads what it was sent and the close frame. Sent counts
    exactly the frames the two got; errors exactly the stalled one's messages it did not get."""
    channel_id, token = create_channel(server.url)
    messages = [struct.pack("!I", i) * (MESSAGE_SIZE // 4) for i in range(BURST)]
    async with http_client() as client, subscribe(server.url, channel_id, token) as reader:
        await gauge_equals(server.url, 1)
        stalled = await asyncio.to_thread(raw_websocket_with_receive_buffer, server.url, channel_id, token, 4096)
        try:
            await gauge_equals(server.url, 2)
            before = await asyncio.to_thread(counters, server)

            async def read_all() -> list[bytes]:
                return [await recv_binary(reader) for _ in range(BURST)]

            reading = asyncio.create_task(read_all())
            try:
                for data in messages:
                    assert (await publish(client, server.url, channel_id, data, token=token)).status_code == 204
                assert await reading == messages
            finally:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading
            got, code = await asyncio.to_thread(stalled.read_until_close, 30)
        finally:
            stalled.close()
        await gauge_equals(server.url, 1)
        after = await asyncio.to_thread(counters, server)
    assert code == TOO_SLOW
    assert got == messages[: len(got)]
    assert 0 < len(got) < BURST
    assert grown(before, after) == {
        "sent": BURST + len(got),
        "sent_bytes": (BURST + len(got)) * MESSAGE_SIZE,
        "errors": BURST - len(got),
        "closed_4008": 1,
    }
