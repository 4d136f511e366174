"""Server-Sent Events at ``GET /webchannel/v1/channels/{id}/events``, against real ``manage.py serve``
processes with httpx streaming: the headers and the event format (multi-line text, binary as
base64), keepalive comments, refusals as problem+json before the stream, ``server.max_connections``
shared with WebSockets, a stalled reader cut off with the server's memory bounded, and SIGTERM
ending the stream within the drain window.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.common import API_KEY, assert_problem, expired_token
from tests.e2e.helpers import (
    CHANNELS,
    RssWatch,
    channel_url,
    closed_with,
    create_channel,
    gauge_equals,
    http_client,
    metric_value,
    metrics_text,
    publish,
    read_until_connection_ends,
    refused_status,
    subscribe,
    users_connected,
    ws_url,
)
from tests.harness import ServerProcess, base_config, serving, timeout
from tests.unit.test_sse_format import ParsedStream, parse_event_stream
from tests.waiting import eventually

MIB = 1024 * 1024


def events_url(base_url: str, channel_id: str, token: str | None = None) -> str:
    url = f"{base_url}{CHANNELS}/{quote(channel_id, safe='')}/events"
    if token is not None:
        url += f"?access_token={quote(token, safe='')}"
    return url


class EventReader:
    """An open event stream: parses what arrives the way EventSource does."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.parsed = ParsedStream()
        self.raw = b""
        self.ended = False
        self._chunks = response.aiter_raw()
        self._pending = b""
        self._seen = 0

    async def _more(self, deadline: float) -> None:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self.ended = True
                return
        self.raw += chunk
        data = self._pending + chunk
        # Keep an incomplete UTF-8 sequence for the next chunk.
        for cut in range(len(data), max(len(data) - 4, -1), -1):
            try:
                text = data[:cut].decode("utf-8")
            except UnicodeDecodeError:
                continue
            self._pending = data[cut:]
            parse_event_stream(text, self.parsed)
            return
        raise AssertionError(f"the stream is not UTF-8: {data[:80]!r}")

    async def next_event(self, seconds: float = 10) -> tuple[str, str]:
        deadline = time.monotonic() + timeout(seconds)
        while len(self.parsed.events) <= self._seen:
            assert not self.ended, f"the stream ended; received {self.raw[-300:]!r}"
            await self._more(deadline)
        self._seen += 1
        return self.parsed.events[self._seen - 1]

    async def comments(self, count: int, seconds: float) -> list[str]:
        deadline = time.monotonic() + timeout(seconds)
        while len(self.parsed.comments) < count:
            assert not self.ended, "the stream ended"
            await self._more(deadline)
        return self.parsed.comments

    async def until_end(self, seconds: float) -> None:
        deadline = time.monotonic() + timeout(seconds)
        while not self.ended:
            await self._more(deadline)


@contextlib.asynccontextmanager
async def event_stream(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[EventReader]:
    async with client.stream("GET", url, headers={"accept": "text/event-stream", **(headers or {})}) as response:
        assert response.status_code == 200, (await response.aread())[:300]
        reader = EventReader(response)
        await reader.comments(1, 10)  # the opening comment: the server has subscribed
        yield reader


def stream_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(timeout(10), read=None))


async def test_headers_and_events_for_text_multi_line_binary_and_empty_payloads(shared_server: ServerProcess):
    channel_id, token = create_channel(shared_server.url, "sse-t\u00e9st-\U0001f680")
    payloads = [
        b"hello",
        "multi\nline \u00e9\n\n  indented\n".encode(),
        b"",
        b"\xff\xfe not utf-8",
        b"carriage\r\nreturn",
        b"data: not a field\nevent: binary",
    ]
    async with stream_client() as client, event_stream(client, events_url(shared_server.url, channel_id, token)) as sse:
        headers = sse.response.headers
        assert headers["content-type"] == "text/event-stream"
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        async with http_client() as publisher:
            for payload in payloads:
                response = await publish(publisher, shared_server.url, channel_id, payload, token=token)
                assert response.status_code == 204
        received = [await sse.next_event() for _ in payloads]
    assert received == [
        ("message", "hello"),
        ("message", "multi\nline \u00e9\n\n  indented\n"),
        ("message", ""),
        ("binary", base64.b64encode(b"\xff\xfe not utf-8").decode()),
        ("binary", base64.b64encode(b"carriage\r\nreturn").decode()),
        ("message", "data: not a field\nevent: binary"),
    ]
    assert b"data: multi\ndata: line \xc3\xa9\ndata: \ndata:   indented\ndata: \n\n" in sse.raw


async def test_bearer_header_and_many_streams_and_sockets_on_one_channel(shared_server: ServerProcess):
    channel_id, token = create_channel(shared_server.url)
    url = events_url(shared_server.url, channel_id)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(stream_client())
        streams = [
            await stack.enter_async_context(event_stream(client, url, {"authorization": f"Bearer {token}"}))
            for _ in range(3)
        ]
        ws = await stack.enter_async_context(subscribe(shared_server.url, channel_id, token))
        async with http_client() as publisher:
            for i in range(5):
                response = await publish(publisher, shared_server.url, channel_id, b"m%d" % i, token=token)
                assert response.status_code == 204
        for sse in streams:
            assert [await sse.next_event() for _ in range(5)] == [("message", f"m{i}") for i in range(5)]
        assert [await ws.recv() for _ in range(5)] == [b"m%d" % i for i in range(5)]


async def test_refusals_are_problems_before_any_stream(shared_server: ServerProcess):
    channel_id, token = create_channel(shared_server.url)
    other_id, other_token = create_channel(shared_server.url)
    accept = {"accept": "text/event-stream"}
    async with http_client() as client:
        cases: list[tuple[str, dict[str, str], int]] = [
            (events_url(shared_server.url, channel_id), accept, 401),
            (events_url(shared_server.url, channel_id, "not-a-token"), accept, 401),
            (events_url(shared_server.url, channel_id, expired_token(channel_id)), accept, 401),
            (events_url(shared_server.url, channel_id, other_token), accept, 403),
            (events_url(shared_server.url, channel_id), {**accept, "authorization": f"Bearer {other_token}"}, 403),
            (f"{shared_server.url}{CHANNELS}/bad%20id/events?access_token={token}", accept, 400),
            (f"{shared_server.url}{CHANNELS}/bad%FFid/events?access_token={token}", accept, 400),
            (events_url(shared_server.url, channel_id, token), {"accept": "application/json"}, 406),
        ]
        for url, headers, status in cases:
            response = await client.get(url, headers=headers)
            assert_problem(response, status, context=url.replace(token, "[token]"))
            assert response.headers.get("content-type") == "application/problem+json"
    assert other_id != channel_id


async def test_the_access_log_redacts_the_token(shared_server: ServerProcess):
    channel_id, token = create_channel(shared_server.url)
    async with stream_client() as client:
        async with event_stream(client, events_url(shared_server.url, channel_id, token)):
            pass
        response = await client.get(events_url(shared_server.url, channel_id, token + "x"))
        assert response.status_code == 401

    await eventually(lambda: "events?access_token=[redacted]" in shared_server.output(), 10, "an access-log line")
    assert token not in shared_server.output()


@pytest.fixture(scope="module")
def keepalive_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = base_config(server={"ping_interval": 0.2, "max_connections": 2})
    with serving(tmp_path_factory.mktemp("sse-keepalive"), config) as server:
        yield server


async def test_keepalive_comments_every_ping_interval(keepalive_server: ServerProcess):
    channel_id, token = create_channel(keepalive_server.url)
    url = events_url(keepalive_server.url, channel_id, token)
    async with stream_client() as client, event_stream(client, url) as sse:
        started = time.monotonic()
        comments = await sse.comments(4, 10)
        elapsed = time.monotonic() - started
    assert comments[:4] == ["stream open", "keepalive", "keepalive", "keepalive"]
    assert elapsed >= 0.5, elapsed  # three intervals of 0.2 s, not a burst
    assert b": keepalive\n\n" in sse.raw


async def test_max_connections_counts_websockets_and_streams_together(keepalive_server: ServerProcess):
    server = keepalive_server
    await gauge_equals(server.url, 0)
    channel_id, token = create_channel(server.url)
    async with stream_client() as client, contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(subscribe(server.url, channel_id, token))
        await stack.enter_async_context(event_stream(client, events_url(server.url, channel_id, token)))
        await gauge_equals(server.url, 2)
        # A third subscriber of either kind is refused.
        response = await client.get(events_url(server.url, channel_id, token), headers={"accept": "text/event-stream"})
        assert_problem(response, 503)
        assert response.headers["retry-after"]
        assert await refused_status(ws_url(server.url, channel_id, token)) == 403
    await gauge_equals(server.url, 0)
    # With both gone, a stream and a socket fit again.
    async with stream_client() as client, contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(event_stream(client, events_url(server.url, channel_id, token)))
        await stack.enter_async_context(subscribe(server.url, channel_id, token))
        await gauge_equals(server.url, 2)


def stalled_stream(server: ServerProcess, channel_id: str, token: str) -> socket.socket:
    """An event stream whose reader never reads, with a small receive buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(timeout(10))
    sock.connect((server.host, server.port))
    path = f"{CHANNELS}/{quote(channel_id, safe='')}/events?access_token={quote(token, safe='')}"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    head = b""
    while b": stream open\n\n" not in head:
        chunk = sock.recv(1)  # one byte at a time: read nothing past the opening
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


@pytest.mark.slow
async def test_a_stalled_reader_is_cut_off_and_memory_stays_bounded(tmp_path: Path):
    max_backlog = 1 * MIB
    message = bytes(range(256)) * 1024  # 256 KiB, binary: 341 KiB of base64 on the wire
    config = base_config(server={"max_backlog_bytes": max_backlog}, channel={"max_message_size": 256 * 1024})
    with serving(tmp_path, config, name="sse-stalled") as server:
        channel_id, token = create_channel(server.url)
        async with stream_client() as client, event_stream(client, events_url(server.url, channel_id, token)) as sse:
            stalled = await asyncio.to_thread(stalled_stream, server, channel_id, token)
            try:
                await gauge_equals(server.url, 2)
                watch = RssWatch(server.pid).start()
                count = 120  # 40 MiB of events: forty times the bound
                async with http_client() as publisher:
                    for i in range(count):
                        response = await publish(publisher, server.url, channel_id, message, token=token)
                        assert response.status_code == 204
                        assert await sse.next_event(30) == ("binary", base64.b64encode(message).decode()), i
                watch.stop()
                await gauge_equals(server.url, 1)  # the stalled stream is gone, the reader is not
                read, how = await asyncio.to_thread(read_until_connection_ends, stalled, 10)
                assert read < 4 * MIB, read
                print(f"[slow] stalled event stream: {read} bytes readable, then {how}; {watch.report('sse')}")
            finally:
                stalled.close()
        assert watch.growth < 30 * MIB, watch.report("sse")
        assert "event stream reader" in server.output()  # cut off by the unsent-bytes bound
        assert "Traceback" not in server.output()


@pytest.mark.slow
async def test_sigterm_ends_the_stream_within_the_drain_window(tmp_path: Path):
    config = base_config(server={"drain_window": 1.0})
    with serving(tmp_path, config, name="sse-drain") as server:
        channel_id, token = create_channel(server.url)
        async with stream_client() as client, event_stream(client, events_url(server.url, channel_id, token)) as sse:
            async with http_client() as publisher:
                response = await publish(publisher, server.url, channel_id, b"before", token=token)
                assert response.status_code == 204
            assert await sse.next_event() == ("message", "before")
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            await sse.until_end(5)
            ended = time.monotonic() - started
        assert ended < 1.0 + 0.5, ended
        assert server.wait_exit(10) == 0
        assert "Traceback" not in server.output()


async def test_a_subscribe_only_token_opens_a_stream(shared_server: ServerProcess):
    response = httpx.post(
        f"{shared_server.url}{CHANNELS}", headers={"x-api-key": API_KEY}, json={}, timeout=timeout(10)
    )
    created = response.json()
    channel_id, subscribe_token = created["channelId"], created["subscribeToken"]
    async with stream_client() as client:
        url = events_url(shared_server.url, channel_id, subscribe_token)
        async with event_stream(client, url) as sse, http_client() as publisher:
            response = await publish(publisher, shared_server.url, channel_id, b"hi", token=created["token"])
            assert response.status_code == 204
            assert await sse.next_event() == ("message", "hi")


async def channel_subscribers(client: httpx.AsyncClient, base_url: str, channel_id: str) -> int:
    response = await client.get(channel_url(base_url, channel_id), headers={"x-api-key": API_KEY})
    assert response.status_code == 200, response.text
    return int(response.json()["subscribers"])


async def test_a_stream_counts_as_a_subscriber_and_ends_when_the_channel_is_closed(shared_server: ServerProcess):
    channel_id, token = create_channel(shared_server.url)
    async with stream_client() as client, http_client() as api:
        async with subscribe(shared_server.url, channel_id, token) as ws:
            async with event_stream(client, events_url(shared_server.url, channel_id, token)) as sse:
                assert await channel_subscribers(api, shared_server.url, channel_id) == 2
                url = channel_url(shared_server.url, channel_id)
                response = await api.request("DELETE", url, headers={"x-api-key": API_KEY}, content=b"bye\nnow")
                assert response.status_code == 204
                assert response.headers["webchannel-subscribers"] == "2"
                assert await sse.next_event() == ("message", "bye\nnow")
                await sse.until_end(10)
            assert await ws.recv() == b"bye\nnow"
            assert await closed_with(ws) == 4000
        await eventually(
            lambda: _subscribers_are(api, shared_server.url, channel_id, 0), 10, "the channel to have no subscribers"
        )


async def _subscribers_are(client: httpx.AsyncClient, base_url: str, channel_id: str, expected: int) -> bool:
    return await channel_subscribers(client, base_url, channel_id) == expected


async def test_streams_are_in_the_metrics_and_carry_cors_headers(tmp_path: Path):
    config = base_config(server={"cors_origins": ["https://app.example"]})
    with serving(tmp_path, config, name="sse-metrics") as server:
        channel_id, token = create_channel(server.url)
        url = events_url(server.url, channel_id, token)
        async with stream_client() as client:
            async with event_stream(client, url, {"origin": "https://app.example"}) as sse:
                assert sse.response.headers["access-control-allow-origin"] == "https://app.example"
                assert await asyncio.to_thread(users_connected, server.url) == 1
                async with http_client() as publisher:
                    response = await publish(publisher, server.url, channel_id, b"counted", token=token)
                    assert response.status_code == 204
                assert await sse.next_event() == ("message", "counted")
            async with event_stream(client, url, {"origin": "https://elsewhere.example"}) as sse:
                assert "access-control-allow-origin" not in sse.response.headers
            response = await client.get(events_url(server.url, channel_id, "bad"), headers={"accept": "*/*"})
            assert response.status_code == 401
        text = await asyncio.to_thread(metrics_text, server.url)
        responses = "django_http_responses_total_by_status_view_method_total"
        assert metric_value(text, responses, {"status": "200", "view": "channel_events", "method": "GET"}) == 2
        assert metric_value(text, responses, {"status": "401", "view": "channel_events", "method": "GET"}) == 1
        assert metric_value(text, "webchannel_websocket_refused_total", {"reason": "invalid_token"}) == 1
        assert metric_value(text, "webchannel_messages_sent_total") == 1


@pytest.mark.slow
async def test_through_redis_a_stream_on_one_process_gets_a_publish_on_another_and_counts_there(redis_pair):
    a, b = redis_pair
    channel_id, token = create_channel(a.url)
    async with stream_client() as client, http_client() as api:
        async with event_stream(client, events_url(b.url, channel_id, token)) as sse:
            await eventually(
                lambda: _subscribers_are(api, a.url, channel_id, 1), 10, "process A to count B's event stream"
            )
            response = await publish(api, a.url, channel_id, "via redis\n\u00e9".encode(), token=token)
            assert response.status_code == 204
            assert await sse.next_event() == ("message", "via redis\n\u00e9")
            response = await publish(api, a.url, channel_id, b"\x00\xff", token=token)
            assert await sse.next_event() == ("binary", base64.b64encode(b"\x00\xff").decode())
        await eventually(lambda: _subscribers_are(api, a.url, channel_id, 0), 10, "the stream to be forgotten")


@pytest.mark.slow
@pytest.mark.needs("nginx")
async def test_events_pass_through_the_shipped_nginx_configuration_one_by_one(tmp_path: Path):
    from tests.nginx import proxying

    config = base_config(server={"ping_interval": 0.3})
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(serving(tmp_path, config, name="sse-nginx"))
        nginx = stack.enter_context(proxying(tmp_path / "nginx", [f"{server.host}:{server.port}"]))
        channel_id, token = create_channel(nginx.url)
        url = events_url(nginx.url, channel_id, token)
        async with stream_client() as client, event_stream(client, url) as sse, http_client() as publisher:
            # Each event arrives before the next publish: nothing waits in nginx's buffers.
            for payload in [b"one\ntwo", b"\xff\x00", "dr\u00e9i".encode()]:
                response = await publish(publisher, nginx.url, channel_id, payload, token=token)
                assert response.status_code == 204
                kind, data = await sse.next_event()
                got = base64.b64decode(data) if kind == "binary" else data.encode()
                assert got == payload
            assert "keepalive" in await sse.comments(2, 10)
