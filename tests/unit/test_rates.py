"""Publish rates of named keys (channels_api.rates): fixed windows on an injected clock, exact in one
process, shared between processes through a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import cast

import pytest
import redis
from redis.asyncio import Redis

from channels_api.exceptions import RateLimited
from channels_api.rates import PublishRates, RedisTarget, allowance
from channels_api.redis_pool import bounded_client
from tests.harness import RedisServer, timeout
from tests.waiting import eventually

T = 1_700_000_000.0
"""A whole second on the wall clock: windows start on it."""


class Clock:
    """A wall clock that moves only when told."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def admitted(rates: PublishRates, name: str, times: int) -> int:
    """How many of ``times`` publishes by ``name`` are admitted."""
    count = 0
    for _ in range(times):
        try:
            rates.admit(name)
        except RateLimited:
            continue
        count += 1
    return count


@pytest.mark.parametrize(
    ("rate", "expected"),
    [(20, (1, 20)), (1, (1, 1)), (2.5, (1, 2)), (0.5, (2, 1)), (0.3, (4, 1)), (0.01, (100, 1)), (1000.9, (1, 1000))],
)
def test_the_window_and_what_it_allows_never_exceed_the_rate(rate: float, expected: tuple[int, int]) -> None:
    span, allowed = allowance(rate)
    assert (span, allowed) == expected
    assert allowed / span <= rate


def test_one_process_admits_exactly_the_rate_per_second() -> None:
    clock = Clock(T + 0.25)
    rates = PublishRates({"ci": 3}, redis=None, clock=clock)
    assert admitted(rates, "ci", 10) == 3
    clock.now = T + 0.999
    with pytest.raises(RateLimited) as refused:
        rates.admit("ci")
    assert refused.value.retry_after == 1
    assert str(refused.value) == "this key may publish 3 messages per second; retry after 1 s"
    clock.now = T + 1.0  # a new window
    assert admitted(rates, "ci", 10) == 3
    clock.now = T + 5.5  # windows with no publish in between
    assert admitted(rates, "ci", 10) == 3


def test_keys_without_a_rate_are_not_counted() -> None:
    rates = PublishRates({"ci": 1}, redis=None, clock=Clock(T))
    assert admitted(rates, "other", 1000) == 1000
    assert admitted(rates, "api_keys", 1000) == 1000
    assert rates._windows.keys() == set()
    assert admitted(rates, "ci", 5) == 1


def test_each_key_has_its_own_count() -> None:
    rates = PublishRates({"a": 2, "b": 3}, redis=None, clock=Clock(T + 0.5))
    assert (admitted(rates, "a", 5), admitted(rates, "b", 5), admitted(rates, "a", 5)) == (2, 3, 0)


def test_a_rate_below_one_a_second_gets_a_longer_window_and_is_told_when_it_ends() -> None:
    clock = Clock(T + 0.2)  # T is even: a window of 2 s starts there
    rates = PublishRates({"slow": 0.5}, redis=None, clock=clock)
    assert admitted(rates, "slow", 3) == 1
    with pytest.raises(RateLimited) as refused:
        rates.admit("slow")
    assert refused.value.retry_after == 2  # 1.8 s, rounded up
    assert "1 message per 2 seconds" in str(refused.value)
    clock.now = T + 1.9
    assert admitted(rates, "slow", 1) == 0
    clock.now = T + 2.0
    assert admitted(rates, "slow", 3) == 1


async def test_without_redis_no_task_is_started() -> None:
    rates = PublishRates({"ci": 5}, redis=None, clock=Clock(T))
    assert admitted(rates, "ci", 1) == 1
    assert rates._task is None


# --- across processes, through a real Redis ---------------------------------------------------


@pytest.fixture
def target(redis_server: RedisServer) -> RedisTarget:
    return {"address": redis_server.url}, "test"


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = bounded_client({"address": redis_server.url})
    try:
        yield client
    finally:
        await client.aclose(close_connection_pool=True)


async def test_two_processes_share_the_rate_through_their_reports(target: RedisTarget, client: Redis) -> None:
    clock = Clock(T + 0.5)
    a = PublishRates({"ci": 10}, redis=None, clock=clock)  # reports driven by the test
    b = PublishRates({"ci": 10}, redis=None, clock=clock)
    assert admitted(a, "ci", 6) == 6
    await a.report(client, "test")
    assert admitted(b, "ci", 1) == 1  # b has not heard of a yet
    await b.report(client, "test")  # adds its 1, learns a's 6
    assert admitted(b, "ci", 10) == 3
    await b.report(client, "test")
    await a.report(client, "test")  # learns b's 4
    assert admitted(a, "ci", 5) == 0
    assert int(cast(bytes, await client.get(f"test__rate__ci__{int(T)}"))) == 10
    assert 0 < await client.pttl(f"test__rate__ci__{int(T)}") <= 3000  # gone soon after its window

    clock.now = T + 1.0  # a new window: a new counter, and nothing known of the others yet
    assert admitted(a, "ci", 4) == 4
    await a.report(client, "test")
    assert int(cast(bytes, await client.get(f"test__rate__ci__{int(T) + 1}"))) == 4


async def test_a_failed_report_is_carried_by_the_next(target: RedisTarget, client: Redis) -> None:
    clock = Clock(T + 0.5)
    a = PublishRates({"ci": 10}, redis=None, clock=clock)
    b = PublishRates({"ci": 10}, redis=None, clock=clock)
    assert admitted(a, "ci", 3) == 3
    broken = bounded_client({"address": "redis://127.0.0.1:1/0"}, socket_connect_timeout=0.2)
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await a.report(broken, "test")
    finally:
        await broken.aclose(close_connection_pool=True)
    await a.report(client, "test")
    assert admitted(b, "ci", 1) == 1
    await b.report(client, "test")
    assert admitted(b, "ci", 10) == 6


async def test_the_background_task_reports_while_publishing_and_then_ends(target: RedisTarget) -> None:
    clock = Clock(time.time())
    a = PublishRates({"ci": 100}, redis=target, clock=clock)
    b = PublishRates({"ci": 100}, redis=target, clock=clock)
    try:
        assert admitted(a, "ci", 60) == 60
        assert admitted(b, "ci", 1) == 1
        await eventually(lambda: b._windows["ci"].others == 60, 5, "b to hear of a's publishes")
        assert admitted(b, "ci", 100) == 100 - 60 - 1
        task = a._task
        assert task is not None
        assert not task.done()
        clock.now += 2  # two windows without a publish: the task ends by itself
        await asyncio.wait_for(task, timeout(5))
        assert a._task is None
        assert a._windows == {}
    finally:
        await a.stop()
        await b.stop()
