"""Readiness against a real ``redis-server``: probes cannot load Redis (concurrent and repeated
``/readyz`` calls share one round trip a second), yet ``/readyz`` turns 503 within 2 s of an
outage, also of a Redis that accepts connections but answers nothing (``CLIENT PAUSE``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.e2e.helpers import http_client
from tests.harness import RedisServer, ServerProcess, base_config, serving, timeout
from tests.waiting import eventually

pytestmark = pytest.mark.slow

OUTAGE_SHOWS_WITHIN = 2.0
"""Seconds from the start of an outage until /readyz answers 503 (max age 1 s + probe timeout 0.8 s)."""


@pytest.fixture
def redis_backed(tmp_path: Path, redis_server: RedisServer) -> Iterator[ServerProcess]:
    with serving(tmp_path, base_config(redis={"url": redis_server.url}), name="readiness") as server:
        yield server


def publishes(redis_server: RedisServer) -> int:
    """PUBLISH commands Redis has executed so far: one per readiness probe when nothing else publishes."""
    admin = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=timeout(5))
    try:
        return int(admin.info("commandstats").get("cmdstat_publish", {}).get("calls", 0))
    finally:
        admin.close()


async def wait_status(client: httpx.AsyncClient, server: ServerProcess, status: int, seconds: float) -> None:
    async def answers() -> bool:
        return (await client.get(f"{server.url}/readyz")).status_code == status

    await eventually(answers, seconds, f"/readyz to answer {status}")


@contextlib.asynccontextmanager
async def polled(client: httpx.AsyncClient, server: ServerProcess) -> AsyncIterator[list[tuple[float, int]]]:
    """Poll ``/readyz`` back to back (so a cached 200 is always fresh) while the block runs;
    yields the list of (time the answer arrived, status), filled as answers arrive."""
    answers: list[tuple[float, int]] = []
    stop = asyncio.Event()

    async def poll() -> None:
        while not stop.is_set():
            status = (await client.get(f"{server.url}/readyz")).status_code
            answers.append((time.monotonic(), status))

    task = asyncio.ensure_future(poll())
    try:
        yield answers
    finally:
        stop.set()
        async with asyncio.timeout(timeout(10)):
            await task


async def first_503_after(answers: list[tuple[float, int]], since: float, seconds: float) -> float:
    """Seconds from ``since`` until the poller saw a 503."""
    await eventually(
        lambda: any(at >= since and status == 503 for at, status in answers), seconds, "a 503", interval=0.01
    )
    return min(at for at, status in answers if at >= since and status == 503) - since


async def test_many_concurrent_and_repeated_readyz_calls_cost_redis_one_round_trip_a_second(
    redis_server: RedisServer, redis_backed: ServerProcess
) -> None:
    async with http_client(limits=httpx.Limits(max_connections=50)) as client:
        await wait_status(client, redis_backed, 200, 10)
        before, started = publishes(redis_server), time.monotonic()
        calls = 0

        async def caller() -> None:
            nonlocal calls
            while time.monotonic() - started < 3.0:
                response = await client.get(f"{redis_backed.url}/readyz")
                assert response.status_code == 200, response.text
                calls += 1

        async with asyncio.timeout(timeout(30)):
            await asyncio.gather(*(caller() for _ in range(50)))
        elapsed = time.monotonic() - started
    probes = publishes(redis_server) - before
    print(f"[readyz] {calls} calls in {elapsed:.1f} s cost Redis {probes} round trips")
    assert calls >= 200, f"only {calls} calls: the load was too light to show anything"
    assert 1 <= probes <= elapsed / 1.0 + 2, f"{probes} probes for {calls} calls in {elapsed:.1f} s"


async def test_readyz_turns_503_within_two_seconds_of_redis_pausing_and_200_after(
    redis_server: RedisServer, redis_backed: ServerProcess
) -> None:
    pause_ms = 4000
    async with http_client() as client:
        await wait_status(client, redis_backed, 200, 10)
        async with polled(client, redis_backed) as answers:
            admin = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=timeout(5))
            try:
                paused_at = time.monotonic()
                assert admin.execute_command("CLIENT", "PAUSE", pause_ms, "ALL")
            finally:
                admin.close()
            shown = await first_503_after(answers, paused_at, 5)
        print(f"[readyz] 503 {shown:.2f} s after CLIENT PAUSE")
        assert shown < pause_ms / 1000, "the measurement outlasted the pause: inconclusive"
        assert shown < timeout(OUTAGE_SHOWS_WITHIN), f"/readyz took {shown:.2f} s to turn 503"
        await wait_status(client, redis_backed, 200, 15)
    assert "Traceback" not in redis_backed.output()


async def test_readyz_turns_503_within_two_seconds_of_redis_stopping(
    redis_server: RedisServer, redis_backed: ServerProcess
) -> None:
    async with http_client() as client:
        await wait_status(client, redis_backed, 200, 10)
        async with polled(client, redis_backed) as answers:
            stopped_at = time.monotonic()
            redis_server.stop()
            shown = await first_503_after(answers, stopped_at, 5)
        print(f"[readyz] 503 {shown:.2f} s after Redis stopped")
        assert shown < timeout(OUTAGE_SHOWS_WITHIN), f"/readyz took {shown:.2f} s to turn 503"
