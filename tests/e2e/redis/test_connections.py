"""Waiting publishes and Redis connections under a burst, against two ``manage.py serve`` processes
and a real Redis: publishes with ``?wait=`` share one poll of Redis per process, past
``server.max_waiting_publishes`` they get 429, and every Redis connection pool of a process is
capped and closes its idle connections afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from channels_api.redis_pool import IDLE_SECONDS, KEEP_IDLE, MAX_CONNECTIONS
from tests.common import API_KEY, assert_problem
from tests.e2e.helpers import channel_url, create_channel, http_client, publish, subscribe
from tests.e2e.redis.watch import RedisWatch
from tests.harness import RedisServer, ServerProcess, base_config, serving, timeout
from tests.waiting import eventually

pytestmark = pytest.mark.slow

MAX_WAITING = 100
"""``server.max_waiting_publishes`` of the servers under test: small, so a test can pass it."""
WAITS = 150
COMMANDS_PER_SECOND = 100
"""Two idle processes send Redis about 15 commands a second (presence), one process polling for
its waiting publishes about 10 more; one poll per waiter made it about 600 with 150 waiters."""
POOLS_PER_PROCESS = 2
"""The channel layer's (one Redis server) and presence's: the processes under test have no rated key."""


@pytest.fixture
def pair(tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    config = base_config(redis={"url": redis_server.url}, server={"max_waiting_publishes": MAX_WAITING})
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(serving(tmp_path, config, name="a"))
        b = stack.enter_context(serving(tmp_path, config, name="b"))
        yield a, b


@pytest.fixture
def watch(redis_server: RedisServer) -> Iterator[RedisWatch]:
    watch = RedisWatch(redis_server)
    try:
        yield watch
    finally:
        watch.close()


def many_connections() -> httpx.Limits:
    return httpx.Limits(max_connections=2 * WAITS, max_keepalive_connections=2 * WAITS)


async def publish_waiting(
    client: httpx.AsyncClient, server: ServerProcess, channel_id: str, wait: str
) -> httpx.Response:
    return await client.post(
        channel_url(server.url, channel_id) + f"?wait={wait}", content=b"m", headers={"x-api-key": API_KEY}
    )


async def info(client: httpx.AsyncClient, server: ServerProcess, channel_id: str) -> httpx.Response:
    return await client.get(channel_url(server.url, channel_id), headers={"x-api-key": API_KEY})


async def at_once(server: ServerProcess, requests: list[bytes]) -> list[int]:
    """Send each HTTP/1.1 request on a connection of its own, all connected first and then written in
    one go, so the server reads them together; return the status of each answer."""
    streams = [await asyncio.open_connection(server.host, server.port) for _ in requests]
    try:
        for (_, writer), request in zip(streams, requests, strict=True):
            writer.write(request)
        return [int((await reader.readline()).split()[1]) for reader, _ in streams]
    finally:
        for _, writer in streams:
            writer.close()


def request_head(server: ServerProcess, method: str, channel_id: str, query: str = "", body: bytes = b"") -> bytes:
    path = channel_url("", channel_id) + query
    return (
        f"{method} {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nx-api-key: {API_KEY}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


async def warmed_up(client: httpx.AsyncClient, servers: tuple[ServerProcess, ...], watch: RedisWatch) -> int:
    """Every process has published and counted once (its usual connections are open); the number
    of Redis clients once it holds still."""
    for server in servers:
        assert (await publish(client, server.url, "warm-up", b"w", api_key=API_KEY)).status_code == 204
        assert (await info(client, server, "warm-up")).status_code == 200
    readings: list[int] = []

    def settled() -> bool:
        readings.append(watch.clients())
        return len(readings) >= 5 and len(set(readings[-5:])) == 1

    await eventually(settled, 10, "the number of Redis clients to settle")
    return readings[-1]


@pytest.mark.parametrize("channels", [1, 15])
async def test_concurrent_waits_share_one_poll_and_those_past_the_bound_get_429(
    pair: tuple[ServerProcess, ServerProcess], watch: RedisWatch, channels: int
) -> None:
    a, b = pair
    ids = [f"waits-{channels}-{n}" for n in range(channels)]
    _, token = create_channel(a.url, ids[0])
    async with http_client(limits=many_connections()) as client:
        baseline = await warmed_up(client, (a, b), watch)
        watch.start()
        waits = [asyncio.create_task(publish_waiting(client, a, ids[n % channels], "8")) for n in range(WAITS)]
        try:
            responses, peak = await _wait_and_end(waits, watch, b, ids[0], token)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    waited = [(n, r) for n, r in enumerate(responses) if r.status_code != 429]
    assert len(waited) == MAX_WAITING
    for n, response in waited:
        assert response.status_code == 204, response.text
        assert response.headers["webchannel-subscribers"] == ("1" if n % channels == 0 else "0")
    assert peak <= baseline + MAX_CONNECTIONS, f"{peak} Redis clients (baseline {baseline}) during the waits"


async def _wait_and_end(
    waits: list[asyncio.Task[httpx.Response]], watch: RedisWatch, b: ServerProcess, channel_id: str, token: str
) -> tuple[list[httpx.Response], int]:
    """The answers to ``waits`` once a subscriber of ``channel_id`` on ``b`` (or their time) ends them,
    and the most Redis clients seen meanwhile."""

    # Those past the bound are answered at once, while the others wait.
    def refused() -> list[asyncio.Task[httpx.Response]]:
        done = [task for task in waits if task.done()]
        return done if len(done) >= WAITS - MAX_WAITING else []

    for task in await eventually(refused, 4, f"{WAITS - MAX_WAITING} answers"):
        response = task.result()
        assert_problem(response, 429)
        assert int(response.headers["retry-after"]) >= 1

    commands = watch.commands()
    measured = time.monotonic()
    await asyncio.sleep(1.5)  # a measuring interval: the waits go on meanwhile
    per_second = (watch.commands() - commands) / (time.monotonic() - measured)
    assert sum(task.done() for task in waits) == WAITS - MAX_WAITING, "a wait ended early"
    assert per_second <= COMMANDS_PER_SECOND, f"{per_second:.0f} Redis commands/s while {MAX_WAITING} wait"

    # A subscriber on the other process ends the waits on its channel; the others end after 8 s.
    async with subscribe(b.url, channel_id, token):
        responses = await asyncio.wait_for(asyncio.gather(*waits), timeout(15))
    return responses, watch.stop()


async def test_after_a_burst_the_redis_connections_are_few_again(
    pair: tuple[ServerProcess, ServerProcess], watch: RedisWatch
) -> None:
    a, b = pair
    async with http_client(limits=many_connections()) as client:
        await warmed_up(client, (a, b), watch)
    watch.start()
    burst = []
    for server in (a, b):
        requests = []
        for n in range(WAITS // 3):
            requests.append(request_head(server, "GET", f"burst-{n}"))
            requests.append(request_head(server, "POST", f"burst-{n}", body=b"b"))
            requests.append(request_head(server, "POST", f"burst-wait-{n}", "?wait=0.5", b"w"))
        burst.append(at_once(server, requests))
    statuses = [status for answers in await asyncio.wait_for(asyncio.gather(*burst), timeout(30)) for status in answers]
    assert set(statuses) <= {200, 204}, sorted(set(statuses))
    peak = watch.stop()
    ended = time.monotonic()

    assert peak <= 2 * POOLS_PER_PROCESS * MAX_CONNECTIONS, f"{peak} Redis clients during the burst"
    # Per process: the pub/sub connection, and at most KEEP_IDLE idle connections per pool.
    few = 2 * (1 + POOLS_PER_PROCESS * KEEP_IDLE)
    await eventually(lambda: watch.clients() <= few, IDLE_SECONDS + 5, "idle connections to close")
    assert time.monotonic() - ended < IDLE_SECONDS + timeout(5)
