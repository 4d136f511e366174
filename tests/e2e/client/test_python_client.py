"""webchannel_client against a real ``manage.py serve`` (and a real Redis where it matters).

Retries are observed in the server's access log: one line per request the server answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.common import API_KEY
from tests.harness import RedisServer, ServerProcess, base_config, free_port, serving, timeout, wait_for
from webchannel_client import AsyncClient, Channel, Client, WebchannelError


def requests_logged(server: ServerProcess, method: str, path: str, status: int) -> int:
    """How many access-log lines show ``method path`` answered with ``status``."""
    return sum(1 for line in server.output().splitlines() if f'"{method} {path}" {status} ' in line)


def wait_logged(server: ServerProcess, method: str, path: str, status: int, count: int) -> None:
    """Wait for ``count`` such lines; fail if there are more (the client sent more than expected)."""
    wait_for(lambda: requests_logged(server, method, path, status) >= count, 10, f"{count} x {method} {path} {status}")
    assert requests_logged(server, method, path, status) == count


def count_requests(client: Client) -> list[httpx.Request]:
    """Every request ``client`` sends from now on, attempts included (an httpx event hook)."""
    sent: list[httpx.Request] = []
    client._http.event_hooks["request"].append(sent.append)
    return sent


async def next_message(messages, seconds: float = 10) -> bytes:
    return await asyncio.wait_for(messages.__anext__(), timeout(seconds))


async def test_async_client_round_trip_in_order_with_any_bytes(shared_server: ServerProcess):
    payloads = [b"first", b"", bytes(range(256)), "unicode é ✓".encode(), b"x" * 100_000]
    async with AsyncClient(shared_server.url, api_key=API_KEY) as client:
        channel = await client.create_channel("client-é?#%&+")  # characters URLs reserve, in the id
        assert isinstance(channel, Channel)
        assert channel.channel_id == "client-é?#%&+"
        assert channel.expires_at is not None
        assert channel.expires_at.tzinfo is not None
        async with client.subscribe(channel.channel_id, channel.token) as messages:
            for payload in payloads:
                await client.publish(channel.channel_id, payload, token=channel.token)
            received = [await next_message(messages) for _ in payloads]
    assert received == payloads


async def test_sync_client_round_trip_with_the_api_key(shared_server: ServerProcess):
    with Client(shared_server.url, api_key=API_KEY) as client:
        channel = await asyncio.to_thread(client.create_channel)
        assert len(channel.channel_id) >= 21
        async with AsyncClient(shared_server.url) as subscriber:
            token = channel.subscribe_token or channel.token
            async with subscriber.subscribe(channel.channel_id, token) as messages:
                for n in range(3):
                    await asyncio.to_thread(client.publish, channel.channel_id, f"message {n}")
                assert [await next_message(messages) for _ in range(3)] == [b"message 0", b"message 1", b"message 2"]


async def test_subscribe_with_a_wrong_token_raises_the_refusal(shared_server: ServerProcess):
    async with AsyncClient(shared_server.url, api_key=API_KEY) as client:
        channel = await client.create_channel()
        other = await client.create_channel()
        with pytest.raises(WebchannelError) as refused:
            async with client.subscribe(channel.channel_id, other.token):
                pass
    assert refused.value.status in (401, 403)


async def test_a_subscription_closed_by_a_restart_raises_with_its_close_code(tmp_path: Path):
    with serving(tmp_path) as server:
        async with AsyncClient(server.url, api_key=API_KEY) as client:
            channel = await client.create_channel()
            async with client.subscribe(channel.channel_id, channel.token) as messages:
                server.signal(signal.SIGTERM)
                with pytest.raises(WebchannelError) as closed:
                    await next_message(messages, 20)
    assert closed.value.close_code is not None
    assert closed.value.close_code not in (1000, 4000)
    assert closed.value.status is None


async def test_info_publish_count_and_close_with_a_final_message(shared_server: ServerProcess):
    async with AsyncClient(shared_server.url, api_key=API_KEY) as client:
        channel = await client.create_channel("client-close-é?#")
        assert await client.info(channel.channel_id) == 0
        async with client.subscribe(channel.channel_id, channel.token) as messages:
            assert await client.info(channel.channel_id) == 1
            assert await client.publish(channel.channel_id, b"one", token=channel.token) == 1
            assert await client.close_channel(channel.channel_id, final=b"last") == 1
            assert await next_message(messages) == b"one"
            assert await next_message(messages) == b"last"
            with pytest.raises(StopAsyncIteration):  # 4000: the end of the stream, not an error
                await next_message(messages)
        assert await client.close_channel(channel.channel_id) == 0


def test_sync_info_and_close(shared_server: ServerProcess):
    with Client(shared_server.url, api_key=API_KEY) as client:
        channel = client.create_channel()
        assert client.info(channel.channel_id) == 0
        assert client.publish(channel.channel_id, b"nobody") == 0
        assert client.close_channel(channel.channel_id, final="bye") == 0
        with Client(shared_server.url) as anonymous, pytest.raises(WebchannelError) as refused:
            anonymous.info(channel.channel_id)
        assert refused.value.status == 401


async def test_publish_with_wait_waits_for_a_first_subscriber(shared_server: ServerProcess):
    with Client(shared_server.url, api_key=API_KEY) as client:
        channel = await asyncio.to_thread(client.create_channel)
        waiting = asyncio.create_task(asyncio.to_thread(client.publish, channel.channel_id, b"awaited", None, 10))
        async with (
            AsyncClient(shared_server.url) as subscriber,
            subscriber.subscribe(channel.channel_id, channel.token) as messages,
        ):
            assert await asyncio.wait_for(waiting, timeout(15)) == 1
            assert await next_message(messages) == b"awaited"
        with pytest.raises(WebchannelError) as too_long:
            await asyncio.to_thread(client.publish, channel.channel_id, b"x", None, 31)
        assert too_long.value.status == 400


def test_413_is_raised_at_once_without_retry(tmp_path: Path):
    config = base_config(channel={"max_message_size": 1024})
    with serving(tmp_path, config) as server, Client(server.url, api_key=API_KEY, retries=3) as client:
        channel = client.create_channel("too-big")
        client.publish("too-big", b"x" * 1024, token=channel.token)
        # Refused from its Content-Length before Django, so not in the access log: count on the client.
        sent = count_requests(client)
        with pytest.raises(WebchannelError) as too_large:
            client.publish("too-big", b"x" * 1025, token=channel.token)
        assert too_large.value.status == 413
        assert too_large.value.title == "Request Entity Too Large"
        assert too_large.value.detail == "the body must be at most 1024 bytes"
        assert len(sent) == 1


def test_401_is_not_retried(tmp_path: Path):
    with serving(tmp_path) as server, Client(server.url, api_key="wrong-key", retries=3) as client:
        with pytest.raises(WebchannelError) as refused:
            client.create_channel()
        assert refused.value.status == 401
        with pytest.raises(WebchannelError) as bad_token:
            client.publish("some-channel", b"x", token="not-a-jwt")
        assert bad_token.value.status == 401
        wait_logged(server, "POST", "/webchannel/v1/channels", 401, 1)
        wait_logged(server, "POST", "/webchannel/v1/channels/some-channel", 401, 1)


@pytest.mark.slow
def test_redis_outage_is_retried_then_a_clear_503(tmp_path: Path, redis_server: RedisServer):
    config = base_config(redis={"url": redis_server.url})
    with serving(tmp_path, config) as server, Client(server.url, api_key=API_KEY, retries=3) as client:
        channel = client.create_channel("outage")
        client.publish("outage", b"before")
        sent = count_requests(client)
        redis_server.stop()
        wait_for(lambda: httpx.get(f"{server.url}/readyz").status_code == 503, 10, "/readyz to report the outage")
        started = time.monotonic()
        with pytest.raises(WebchannelError) as unavailable:
            client.publish("outage", b"during", token=channel.token)
        assert time.monotonic() - started < timeout(20)
        assert unavailable.value.status == 503
        assert unavailable.value.title == "Service Unavailable"
        assert len(sent) == 4  # the first try and 3 retries, each answered by the server:
        wait_logged(server, "POST", "/webchannel/v1/channels/outage", 503, 4)


def test_a_server_that_is_not_there_is_retried_then_cannot_connect():
    port = free_port()
    with Client(f"http://127.0.0.1:{port}", api_key=API_KEY, retries=2, timeout=2) as client:
        started = time.monotonic()
        with pytest.raises(WebchannelError) as refused:
            client.publish("x", b"never sent")
        elapsed = time.monotonic() - started
    assert refused.value.status is None
    assert refused.value.title == "Cannot connect"
    assert f"127.0.0.1:{port}" in (refused.value.detail or "")
    assert elapsed >= 0.05 + 0.1  # two backoff waits: at least half of 0.1 s, then half of 0.2 s


def test_connections_are_reused(shared_server: ServerProcess):
    with Client(shared_server.url, api_key=API_KEY) as client:
        client.create_channel("reused")
        for _ in range(3):
            client.publish("reused", b"x")
    wait_logged(shared_server, "POST", "/webchannel/v1/channels/reused", 204, 3)
    peers = {
        line.split("webchannel.access: ", 1)[1].split(" ", 1)[0]
        for line in shared_server.output().splitlines()
        if '"POST /webchannel/v1/channels/reused" 204 ' in line
    }
    assert len(peers) == 1, peers  # one TCP connection (the same client port) for all three


@contextlib.contextmanager
def silent_server() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP port that accepts connections and never answers; the accepted sockets are listed."""
    accepted: list[socket.socket] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.05)
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    accepted.append(listener.accept()[0])

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1], accepted
        finally:
            stop.set()
            thread.join(timeout(5))
            for conn in accepted:
                conn.close()


def test_a_read_timeout_is_raised_and_the_publish_not_sent_again():
    with silent_server() as (port, accepted), Client(f"http://127.0.0.1:{port}", timeout=0.5, retries=3) as client:
        started = time.monotonic()
        with pytest.raises(WebchannelError) as timed_out:
            client.publish("x", b"maybe delivered")
        assert time.monotonic() - started < timeout(5)
    assert (timed_out.value.status, timed_out.value.title) == (None, "Timed out")
    assert len(accepted) == 1  # it may have reached the server: sending it again could deliver it twice
