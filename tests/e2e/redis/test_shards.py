"""Channels spread over several Redis servers: ``redis.url`` as a list, one shard per server.

channels_redis picks a channel's server by a consistent hash of its Redis channel name
(``<prefix>__group__<group>``), so every process that lists the same servers in the same order
sends and subscribes each channel on the same server. Here two servers and three ``serve``
processes: every subscriber gets every message of its channel in order, both servers carry
traffic, a server that is killed fails only its own channels (publish 503, new subscribe 4013)
while the other's keep working, and its channels work again when it returns on the same port,
without restarting webchannel.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from channels_redis.utils import _consistent_hash
from websockets.protocol import State

from channels_api.names import group_name
from tests.common import API_KEY, assert_problem
from tests.e2e.helpers import closed_with, create_channel, http_client, publish, recv_binary, subscribe
from tests.harness import ServerProcess, base_config, serving, timeout
from tests.redis_servers import ConfiguredRedis, redis_servers
from tests.waiting import eventually

pytestmark = pytest.mark.slow

PREFIX = "webchannel"  # the default


def redis_channel(channel_id: str) -> str:
    """The Redis pub/sub channel of ``channel_id``, as the layer names it."""
    return f"{PREFIX}__group__{group_name(channel_id)}"


def channel_on(shard: int, shards: int, stem: str) -> str:
    """The first id ``stem-N`` whose Redis channel hashes to server ``shard`` of ``shards``."""
    for n in range(1000):
        channel_id = f"{stem}-{n}"
        if _consistent_hash(redis_channel(channel_id), shards) == shard:
            return channel_id
    raise AssertionError(f"no id {stem}-N hashes to server {shard} of {shards}")


@pytest.fixture
def two_redis(tmp_path: Path) -> Iterator[list[ConfiguredRedis]]:
    with redis_servers(tmp_path, 2) as servers:
        yield servers


@pytest.fixture
def three_processes(tmp_path: Path, two_redis: list[ConfiguredRedis]) -> Iterator[list[ServerProcess]]:
    config = base_config(redis={"url": [server.url for server in two_redis]})
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(serving(tmp_path, config, name=f"p{i}")) for i in range(3)]


async def publish_status(client: httpx.AsyncClient, server: ServerProcess, channel_id: str, body: bytes) -> int:
    """Publish with the API key; 204, or 503 when the channel's server is down (nothing else)."""
    response = await publish(client, server.url, channel_id, body, api_key=API_KEY)
    assert response.status_code in (204, 503), response.text
    return response.status_code


def tokens_for(server: ServerProcess, *channel_ids: str) -> dict[str, str]:
    return {channel_id: create_channel(server.url, channel_id)[1] for channel_id in channel_ids}


async def test_every_subscriber_gets_its_channels_messages_in_order_and_both_servers_carry_traffic(
    two_redis: list[ConfiguredRedis], three_processes: list[ServerProcess]
) -> None:
    ids = [channel_on(0, 2, "first"), channel_on(1, 2, "second")]
    tokens = tokens_for(three_processes[0], *ids)
    calls_before = [server.publish_calls() for server in two_redis]
    count = 30
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(http_client())
        subscribers = {
            (channel_id, process.port): await stack.enter_async_context(
                subscribe(process.url, channel_id, tokens[channel_id])
            )
            for channel_id in ids
            for process in three_processes
        }
        # Each channel is subscribed (once per process) on its own server only.
        for shard, server in enumerate(two_redis):
            mine, other = redis_channel(ids[shard]), redis_channel(ids[1 - shard])
            channels = server.pubsub_channels()
            assert mine in channels, f"{ids[shard]} is not on server {shard}: {channels}"
            assert other not in channels, f"{ids[1 - shard]} is on server {shard} too"
            with server.client() as admin:
                assert admin.pubsub_numsub(mine) == [(mine, 3)]
        # Published through the three processes in turn, both channels interleaved.
        for i in range(count):
            for channel_id in ids:
                process = three_processes[i % 3]
                status = await publish_status(client, process, channel_id, f"{channel_id} {i}".encode())
                assert status == 204
        for (channel_id, _), ws in subscribers.items():
            expected = [f"{channel_id} {i}".encode() for i in range(count)]
            assert [await recv_binary(ws) for _ in range(count)] == expected
    published = [server.publish_calls() - before for server, before in zip(two_redis, calls_before, strict=True)]
    assert all(calls >= count for calls in published), f"PUBLISH calls per server: {published}"


async def test_a_killed_server_fails_only_its_channels_and_they_work_again_when_it_returns(
    two_redis: list[ConfiguredRedis], three_processes: list[ServerProcess]
) -> None:
    a, b, c = three_processes
    healthy, doomed = two_redis
    kept, lost = channel_on(0, 2, "kept"), channel_on(1, 2, "lost")
    tokens = tokens_for(a, kept, lost)
    doomed_port = doomed.port
    pids = [process.pid for process in three_processes]
    async with (
        http_client() as client,
        subscribe(b.url, kept, tokens[kept]) as kept_on_b,
        subscribe(b.url, lost, tokens[lost]) as lost_on_b,
    ):
        assert await publish_status(client, a, lost, b"before") == 204
        assert await recv_binary(lost_on_b) == b"before"

        doomed.stop()
        # The lost server's channels: 503 through every process, a new subscribe closed with 4013.
        for process in three_processes:
            assert await publish_status(client, process, lost, b"lost while down") == 503
        async with subscribe(c.url, lost, tokens[lost]) as late:
            assert await closed_with(late) == 4013
        # The other server's channels keep working, for old and new subscribers alike.
        async with subscribe(c.url, kept, tokens[kept]) as kept_on_c:
            for i, process in enumerate(three_processes):
                assert await publish_status(client, process, kept, b"kept %d" % i) == 204
            for ws in (kept_on_b, kept_on_c):
                assert [await recv_binary(ws) for _ in range(3)] == [b"kept 0", b"kept 1", b"kept 2"]
        # /readyz names the server that is down, never the one that is up.
        response = await client.get(f"{a.url}/readyz")
        problem = assert_problem(response, 503)
        assert f":{doomed.port}/0" in problem["detail"], problem
        assert f":{healthy.port}" not in problem["detail"], problem

        doomed.start()  # empty, on the same port; webchannel is not restarted
        assert doomed.port == doomed_port
        await until_published(client, three_processes, lost, seconds=15)
        async with subscribe(c.url, lost, tokens[lost]) as lost_on_c:
            assert await publish_status(client, a, lost, b"after") == 204
            assert await recv_binary(lost_on_c) == b"after"
        # The subscriber that stayed connected receives again once its process has resubscribed.
        if lost_on_b.state is State.OPEN:
            await until_received(client, a, lost, lost_on_b, seconds=15)
        else:
            assert lost_on_b.close_code in (4013, 1012, 1013), lost_on_b.close_code
        assert await publish_status(client, c, kept, b"still kept") == 204
        assert await recv_binary(kept_on_b) == b"still kept"

    assert [process.pid for process in three_processes] == pids
    assert all(process.alive() for process in three_processes)
    for process in three_processes:
        output = process.output()
        assert "Traceback" not in output, output
        assert f"Redis redis://127.0.0.1:{healthy.port}/0 is unavailable" not in output, output


async def until_published(
    client: httpx.AsyncClient, processes: list[ServerProcess], channel_id: str, seconds: float
) -> None:
    """Publish through each process in turn until every one answers 204 (bounded)."""
    pending = list(processes)

    async def every_one_published() -> bool:
        while pending and await publish_status(client, pending[0], channel_id, b"probe") == 204:
            pending.pop(0)
        return not pending

    await eventually(every_one_published, seconds, f"publishing to {channel_id} to succeed", interval=0.1)


async def until_received(
    client: httpx.AsyncClient,
    process: ServerProcess,
    channel_id: str,
    ws: websockets.ClientConnection,
    seconds: float,
) -> None:
    """Publish numbered messages until ``ws`` gets one (at most once: those sent before its
    process resubscribed are lost), then check it gets the next one too. Messages published
    before (``probe``, ``after``) may arrive first and are skipped."""
    deadline = time.monotonic() + timeout(seconds)
    n = 0
    received = b""
    while not received.startswith(b"again "):
        n += 1
        assert await publish_status(client, process, channel_id, b"again %d" % n) == 204
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.2):
                while not received.startswith(b"again "):
                    received = await recv_binary(ws)
                    assert received.startswith((b"again ", b"probe", b"after")), received
        assert time.monotonic() < deadline, f"the old subscriber received nothing within {timeout(seconds):.0f}s"
    # Drain what arrived meanwhile, then one more must come straight through.
    last = int(received.split()[1])
    while last < n:
        last = int((await recv_binary(ws)).split()[1])
    assert await publish_status(client, process, channel_id, b"final") == 204
    assert await recv_binary(ws) == b"final"
