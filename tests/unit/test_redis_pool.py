"""Capped Redis pools (channels_api.redis_pool) against a real Redis: callers wait their turn for a
bounded time, and idle connections beyond the few kept are closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import cast

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError

from channels_api import redis_pool
from channels_api.redis_pool import BoundedPool, BoundedSentinelPool, bounded_client, bounded_pool
from tests.harness import RedisServer, timeout
from tests.waiting import eventually


def clients(server: RedisServer) -> int:
    """Clients connected to ``server``, besides the one asking."""
    with redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=timeout(5)) as admin:
        return int(admin.info("clients")["connected_clients"]) - 1


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = bounded_client({"address": redis_server.url})
    try:
        yield client
    finally:
        await client.aclose(close_connection_pool=True)


async def blocked(client: Redis, seconds: float) -> None:
    """Hold one connection for ``seconds``: a BLPOP on a list nobody pushes to."""
    await client.blpop(["nothing-here"], timeout=seconds)


async def test_commands_beyond_the_cap_wait_their_turn_on_at_most_max_connections(
    client: Redis, redis_server: RedisServer
) -> None:
    seen: list[int] = []
    running = asyncio.gather(*(blocked(client, 0.3) for _ in range(2 * redis_pool.MAX_CONNECTIONS)))
    while not running.done():
        seen.append(await asyncio.to_thread(clients, redis_server))
        await asyncio.sleep(0.02)
    await running  # every one of them was served, none failed
    assert max(seen) == redis_pool.MAX_CONNECTIONS


async def test_a_command_that_waits_too_long_for_a_connection_fails(redis_server: RedisServer) -> None:
    client = bounded_client({"address": redis_server.url}, max_connections=1, timeout=0.2)
    try:
        holder = asyncio.create_task(blocked(client, 1))
        await eventually(lambda: clients(redis_server) == 1, 5, "the connection to be taken")
        started = time.monotonic()
        with pytest.raises(RedisConnectionError):
            await client.ping()
        assert 0.2 <= time.monotonic() - started < timeout(1)
        await holder
    finally:
        await client.aclose(close_connection_pool=True)


async def test_idle_connections_beyond_the_kept_ones_are_closed_and_reopened_when_needed(
    client: Redis, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_pool, "IDLE_SECONDS", 0.2)
    await asyncio.gather(*(blocked(client, 0.1) for _ in range(redis_pool.MAX_CONNECTIONS)))
    assert clients(redis_server) == redis_pool.MAX_CONNECTIONS
    started = time.monotonic()
    await eventually(lambda: clients(redis_server) == redis_pool.KEEP_IDLE, 5, "idle connections to close")
    assert time.monotonic() - started < timeout(1)
    # The closed ones connect again when a burst needs them.
    await asyncio.gather(*(blocked(client, 0.1) for _ in range(redis_pool.MAX_CONNECTIONS)))
    assert await client.ping()


async def test_connections_in_use_are_never_closed_as_idle(
    client: Redis, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_pool, "IDLE_SECONDS", 0.05)
    await asyncio.gather(*(blocked(client, 0.05) for _ in range(redis_pool.MAX_CONNECTIONS)))
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:  # commands keep taking connections the closer looks at
        await asyncio.gather(*(client.incr("counter") for _ in range(redis_pool.MAX_CONNECTIONS)))
        await asyncio.sleep(0.01)
    assert int(cast(bytes, await client.get("counter"))) > 0


def test_pools_follow_the_host_entry_as_channels_redis_reads_it(redis_server: RedisServer) -> None:
    from_url = bounded_pool({"address": redis_server.url, "socket_timeout": 2})
    assert isinstance(from_url, BoundedPool)
    assert (from_url.max_connections, from_url.timeout) == (redis_pool.MAX_CONNECTIONS, redis_pool.WAIT_SECONDS)
    assert from_url.connection_kwargs["socket_timeout"] == 2
    assert isinstance(bounded_pool({"host": "127.0.0.1", "port": redis_server.port}), BoundedPool)
    sentinel_entry = {"sentinels": [("127.0.0.1", 1)], "master_name": "main", "sentinel_kwargs": {}}
    sentinel = bounded_pool(sentinel_entry, max_connections=3)
    assert isinstance(sentinel, BoundedSentinelPool)
    assert (sentinel.max_connections, sentinel.service_name) == (3, "main")
    assert sentinel.connection_class is SentinelManagedConnection
    assert bounded_pool({**sentinel_entry, "ssl": True}).connection_class is SentinelManagedSSLConnection
