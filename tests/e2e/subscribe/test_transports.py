"""One subscription lifecycle, two transports: a WebSocket and an event stream count, refuse, end
and close the same way, because both are adapters of one ``Subscription``.

Every scenario runs against both transports of a real ``manage.py serve``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.common import make_token
from tests.e2e.helpers import (
    channel_url,
    closed_with,
    http_client,
    metric_value,
    metrics_text,
    publish,
    recv_binary,
    subscribe,
    ws_url,
)
from tests.e2e.subscribe.test_sse import EventReader, event_stream, events_url, stream_client
from tests.harness import ServerProcess, base_config, serving, timeout
from tests.waiting import eventually

TRANSPORTS = ["websocket", "events"]


@dataclass
class Subscriber:
    """A subscriber of either transport, read the same way: its next message, and how it ended."""

    next_message: Callable[[], Awaitable[bytes]]
    ended: Callable[[], Awaitable[str]]
    """What ended it: the close code of a socket, or the last event type of a stream."""


@contextlib.asynccontextmanager
async def subscriber(transport: str, base_url: str, channel_id: str, token: str) -> AsyncIterator[Subscriber]:
    if transport == "websocket":
        async with subscribe(base_url, channel_id, token) as ws:
            yield _socket(ws)
    else:
        async with stream_client() as client, event_stream(client, events_url(base_url, channel_id, token)) as stream:
            yield _stream(stream)


def _socket(ws: ClientConnection) -> Subscriber:
    async def ended() -> str:
        return str(await closed_with(ws))

    return Subscriber(lambda: recv_binary(ws), ended)


def _stream(stream: EventReader) -> Subscriber:
    async def next_message() -> bytes:
        kind, data = await stream.next_event()
        assert kind == "message", (kind, data)
        return data.encode()

    async def ended() -> str:
        await stream.until_end(10)
        return stream.parsed.events[-1][0] if stream.parsed.events else "end"

    return Subscriber(next_message, ended)


def counter(server: ServerProcess, name: str, labels: dict[str, str] | None = None) -> float:
    return metric_value(metrics_text(server.url), name, labels) or 0.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serving(tmp_path_factory.mktemp("transports")) as running:
        yield running


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_messages_are_counted_sent_once_written_and_the_subscriber_counts_while_open(
    server: ServerProcess, transport: str
) -> None:
    channel_id = f"counted-{transport}"
    token = make_token(channel_id)
    sent_before = counter(server, "webchannel_messages_sent_total")
    bytes_before = counter(server, "webchannel_messages_sent_bytes_total")
    async with subscriber(transport, server.url, channel_id, token) as sub, http_client() as client:
        await eventually(lambda: counter(server, "webchannel_users_connected") == 1, 5, "the subscriber to count")
        for body in (b"one", b"two", b"three"):
            response = await publish(client, server.url, channel_id, body, token=token)
            assert response.headers["webchannel-subscribers"] == "1"
            assert await sub.next_message() == body
    await eventually(lambda: counter(server, "webchannel_messages_sent_total") == sent_before + 3, 5, "3 sent")
    assert counter(server, "webchannel_messages_sent_bytes_total") == bytes_before + len(b"onetwothree")
    await eventually(lambda: counter(server, "webchannel_users_connected") == 0, 5, "the subscriber to leave")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_closing_the_channel_sends_the_last_message_then_ends_and_counts_the_close(
    server: ServerProcess, transport: str
) -> None:
    channel_id = f"closed-{transport}"
    token = make_token(channel_id)
    closes_before = counter(server, "webchannel_websocket_closed_total", {"code": "4000"})
    async with subscriber(transport, server.url, channel_id, token) as sub, http_client() as client:
        response = await client.request(
            "DELETE", channel_url(server.url, channel_id), content=b"bye", headers={"authorization": f"Bearer {token}"}
        )
        assert response.status_code == 204
        assert await sub.next_message() == b"bye"
        assert await sub.ended() in {"4000", "message"}  # a socket's close code; a stream simply ends
    assert counter(server, "webchannel_websocket_closed_total", {"code": "4000"}) == closes_before + 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_refused_subscribe_names_the_same_reason_and_is_counted_under_it(
    server: ServerProcess, transport: str
) -> None:
    refused_before = counter(server, "webchannel_websocket_refused_total", {"reason": "wrong_channel"})
    token = make_token("another-channel")
    if transport == "websocket":
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(ws_url(server.url, "refused", token), open_timeout=timeout(10)):
                pass
        status, body = refused.value.response.status_code, bytes(refused.value.response.body or b"")
    else:
        response = httpx.get(events_url(server.url, "refused", token), timeout=timeout(10))
        status, body = response.status_code, response.content
    assert status == 403
    assert b'"detail": "wrong_channel: the token is for another channel"' in body.replace(b'":"', b'": "')
    assert counter(server, "webchannel_websocket_refused_total", {"reason": "wrong_channel"}) == refused_before + 1


@pytest.mark.slow
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_subscription_ends_when_its_token_expires_and_counts_4005(tmp_path: Path, transport: str) -> None:
    with serving(tmp_path, base_config(channel={"ttl": 2})) as short:
        channel_id = f"expiring-{transport}"
        token = make_token(channel_id, ttl=2)
        async with subscriber(transport, short.url, channel_id, token) as sub:
            assert await sub.ended() in {"4005", "expired"}
        assert counter(short, "webchannel_websocket_closed_total", {"code": "4005"}) == 1


@pytest.mark.slow
@pytest.mark.parametrize(("first", "second"), [("websocket", "events"), ("events", "websocket")])
async def test_sockets_and_streams_share_one_connection_budget(tmp_path: Path, first: str, second: str) -> None:
    with serving(tmp_path, base_config(server={"max_connections": 1})) as full:
        async with subscriber(first, full.url, "budget", make_token("budget")):
            if second == "websocket":
                with pytest.raises(websockets.InvalidStatus):
                    async with websockets.connect(
                        ws_url(full.url, "budget", make_token("budget")), open_timeout=timeout(10)
                    ):
                        pass
            else:
                response = httpx.get(events_url(full.url, "budget", make_token("budget")), timeout=timeout(10))
                assert response.status_code == 503
                assert response.headers["retry-after"]
        assert counter(full, "webchannel_websocket_refused_total", {"reason": "max_connections"}) == 1
