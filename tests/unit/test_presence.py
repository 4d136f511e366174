"""Subscriber counts: exact in this process, shared between processes through a real Redis."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable

import pytest
import redis

from channels_api.presence import GHOST_BOUND_SECONDS, POLL_SECONDS, Presence, RedisTarget
from tests.harness import RedisServer, timeout
from tests.waiting import eventually

GROUP = "wc.orders"


def test_local_counts_go_up_and_down_and_leave_nothing_behind() -> None:
    counts = Presence(redis=None)
    counts.joined(GROUP)
    counts.joined(GROUP)
    counts.joined("wc.other")
    assert (counts.count(GROUP), counts.count("wc.other"), counts.count("wc.none")) == (2, 1, 0)
    counts.left(GROUP)
    counts.left(GROUP)
    counts.left("wc.other")
    assert counts.count(GROUP) == 0
    assert counts.local == {}


async def test_waiting_for_a_local_listener_returns_when_it_joins() -> None:
    counts = Presence(redis=None)
    loop = asyncio.get_running_loop()
    loop.call_later(0.1, counts.joined, GROUP)
    started = time.monotonic()
    assert await counts.wait_for_listener(GROUP, timeout(5)) == 1
    assert time.monotonic() - started < timeout(2)
    assert counts._waiters == {}  # nothing kept for the channel


async def test_waiting_without_a_listener_returns_zero_after_the_wait() -> None:
    counts = Presence(redis=None)
    started = time.monotonic()
    assert await counts.wait_for_listener(GROUP, 0.3) == 0
    assert 0.25 <= time.monotonic() - started < timeout(2)
    assert counts._waiters == {}


@pytest.fixture
def target(redis_server: RedisServer) -> RedisTarget:
    return {"address": redis_server.url}, "test"


@pytest.fixture
async def pair(target: RedisTarget) -> AsyncIterator[tuple[Presence, Presence]]:
    a, b = Presence(target, "a"), Presence(target, "b")
    a.start()  # the refresh a serving process runs (Runtime.serve)
    b.start()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


async def test_counts_of_two_processes_add_up_in_each(pair: tuple[Presence, Presence]) -> None:
    a, b = pair
    a.joined(GROUP)
    b.joined(GROUP)
    b.joined(GROUP)
    await eventually(lambda: a.count(GROUP) == 3 and b.count(GROUP) == 3, 3, "both to count 3")
    assert await a.count_now(GROUP) == 3
    b.left(GROUP)
    await eventually(lambda: a.count(GROUP) == 2, 3, "a to see b's subscriber go")
    assert b.count(GROUP) == 2


async def test_a_first_listener_elsewhere_ends_a_wait_quickly(pair: tuple[Presence, Presence]) -> None:
    a, b = pair
    asyncio.get_running_loop().call_later(0.3, b.joined, GROUP)
    started = time.monotonic()
    assert await a.wait_for_listener(GROUP, timeout(10)) == 1
    assert time.monotonic() - started < timeout(1.5)


async def test_publishers_waiting_on_many_channels_share_one_poll(pair: tuple[Presence, Presence]) -> None:
    a, b = pair
    polls = 0
    others_now = a._others_now

    async def counted(client: object, groups: list[str]) -> dict[str, int]:
        nonlocal polls
        polls += 1
        return await others_now(client, groups)

    a._others_now = counted  # type: ignore[method-assign]
    channels = [f"wc.wait{n}" for n in range(10)]
    waits = [asyncio.create_task(a.wait_for_listener(channels[n % 10], timeout(10))) for n in range(200)]
    await eventually(lambda: a.waiting == 200, 3, "every publisher to wait")
    started = time.monotonic()
    b.joined(channels[0])
    b.joined(channels[0])
    await eventually(lambda: sum(w.done() for w in waits) == 20, 3, "the waits on the joined channel to end")
    elapsed = time.monotonic() - started
    assert [w.result() for w in waits if w.done()] == [2] * 20
    assert polls <= elapsed / POLL_SECONDS + 2  # one poll at a time, however many wait
    for w in waits:
        w.cancel()
    await asyncio.gather(*waits, return_exceptions=True)
    assert (a.waiting, a._waiters) == (0, {})
    await eventually(lambda: a._poll_task is not None and a._poll_task.done(), 3, "the poll to end with the waits")


@pytest.mark.slow
async def test_a_stopped_process_is_dropped_within_the_bound(pair: tuple[Presence, Presence]) -> None:
    a, b = pair
    a.joined(GROUP)
    b.joined(GROUP)
    await eventually(lambda: a.count(GROUP) == 2, 3, "a to count b's subscriber")
    await b.stop()  # no more renewals, like kill -9
    stopped = time.monotonic()
    await eventually(lambda: a.count(GROUP) == 1, GHOST_BOUND_SECONDS + 2, "b's subscriber to be dropped")
    assert time.monotonic() - stopped <= GHOST_BOUND_SECONDS + 0.5
    assert await a.count_now(GROUP) == 1


async def test_only_processes_with_subscribers_keep_keys(target: RedisTarget, redis_server: RedisServer) -> None:
    a = Presence(target, "a")
    admin = redis.Redis.from_url(redis_server.url)
    try:
        a.joined(GROUP)
        await eventually(lambda: admin.exists("test__presence__a"), 3, "a's hash")
        assert admin.hgetall("test__presence__a") == {GROUP.encode(): b"1"}
        assert 0 < admin.pttl("test__presence__a") <= 3000
        a.left(GROUP)
        await eventually(lambda: not admin.keys("*"), 3, "every key to go")
    finally:
        await a.stop()
        admin.close()


async def test_a_lost_hash_is_written_again(target: RedisTarget, redis_server: RedisServer) -> None:
    a, b = Presence(target, "a"), Presence(target, "b")
    admin = redis.Redis.from_url(redis_server.url)
    try:
        for _ in range(3):
            a.joined(GROUP)
        b.start()
        await eventually(lambda: b.count(GROUP) == 3, 3, "b to count a's subscribers")
        admin.flushall()  # as after a Redis restart
        await eventually(lambda: admin.hgetall("test__presence__a") == {GROUP.encode(): b"3"}, 3, "a's hash again")
        await eventually(lambda: b.count(GROUP) == 3, 3, "b to count a's subscribers again")
        admin.flushall()
        a.joined("wc.new")  # a change in the same refresh as the loss: every count is written again
        expected = {GROUP.encode(): b"3", b"wc.new": b"1"}
        await eventually(lambda: admin.hgetall("test__presence__a") == expected, 3, "a's whole hash again")
    finally:
        await a.stop()
        await b.stop()
        admin.close()


def test_one_processes_hash_per_channel_field(target: RedisTarget) -> None:
    """Many channels cost one field each, written in one command per refresh."""
    counts = Presence(target, "a")
    for n in range(2000):
        counts.joined(f"wc.c{n}")

    async def run() -> None:
        try:
            counts.start()
            await counts.refresh()
        finally:
            await counts.stop()

    asyncio.run(run())
    host, _ = target
    with redis.Redis.from_url(host["address"]) as admin:
        assert admin.hlen("test__presence__a") == 2000


async def test_asking_from_another_event_loop_leaves_the_refresh_task_alone(pair: tuple[Presence, Presence]) -> None:
    """``publish_sync`` in a thread runs on a loop of its own: it asks through its own connection."""
    a, b = pair
    b.joined(GROUP)
    a.joined(GROUP)
    task, client = a._task, a._client
    await eventually(lambda: a.count(GROUP) == 2, 3, "a to count b's subscriber")
    assert await asyncio.to_thread(asyncio.run, a.count_now(GROUP)) == 2
    assert (a._task, a._client) == (task, client)
    assert task is not None
    assert not task.done()


async def test_stop_ends_the_refresh_loop_even_when_a_command_swallows_the_cancellation(target: RedisTarget) -> None:
    """Python 3.11's ``asyncio.wait_for`` (under every redis-py command) can swallow a cancellation
    that arrives as the command completes; the loop must still end when stopped."""
    counts = Presence(target, "a")
    swallowed = asyncio.Event()
    refresh = counts.refresh

    async def refresh_swallowing_a_cancellation() -> None:
        await refresh()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            swallowed.set()  # returns as if the command had completed: the cancellation is lost

    counts.refresh = refresh_swallowing_a_cancellation  # type: ignore[method-assign]
    counts.joined(GROUP)  # starts the loop on this event loop
    task = counts._task
    assert task is not None
    await asyncio.sleep(0.1)  # inside the swallowing refresh
    async with asyncio.timeout(timeout(5)):
        await counts.stop()
    assert swallowed.is_set()
    assert task.done()


# --- nothing outlives a channel ----------------------------------------------------------------

CHURN = 100_000


def churn(counts: Presence, channels: int, stem: str = "wc.churn") -> None:
    """Each of ``channels`` distinct channels gains a subscriber and loses it."""
    for n in range(channels):
        group = f"{stem}-{n}"
        counts.joined(group)
        counts.left(group)


def traced_growth(run: Callable[[], object]) -> int:
    """Bytes still allocated after ``run()`` that were not before it (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def assert_nothing_kept(counts: Presence, still: dict[str, int] | None = None) -> None:
    assert counts.local == (still or {})
    assert counts._changed == set()
    assert counts._waiters == {}
    assert counts.others == {}


def test_without_redis_channels_that_emptied_leave_nothing_behind() -> None:
    """Every change used to be noted for a Redis write that never came: 100,000 channels joined
    and left kept 16 MB for good."""
    counts = Presence(redis=None)
    churn(counts, 1000, "wc.warm")
    growth = traced_growth(lambda: churn(counts, CHURN))
    assert_nothing_kept(counts)
    assert growth < 64 * 1024, f"{CHURN} channels joined and left kept {growth} bytes"


async def test_without_redis_on_a_running_loop_channels_that_emptied_leave_nothing_behind() -> None:
    """As a server runs it: start() finds no Redis, and nothing is noted for it."""
    counts = Presence(redis=None)
    counts.start()
    growth = traced_growth(lambda: churn(counts, CHURN // 10))
    assert counts._task is None
    assert_nothing_kept(counts)
    assert growth < 64 * 1024


async def test_with_redis_changes_are_forgotten_once_written(target: RedisTarget, redis_server: RedisServer) -> None:
    counts = Presence(target, "a")
    admin = redis.Redis.from_url(redis_server.url)
    try:
        counts.joined(GROUP)  # a channel that stays: the refresh task keeps running
        await eventually(lambda: admin.hgetall("test__presence__a") == {GROUP.encode(): b"1"}, 3, "a's hash")
        churn(counts, CHURN // 5)
        assert counts._changed  # noted for the next write...
        await counts.refresh()
        assert_nothing_kept(counts, {GROUP: 1})  # ...and forgotten once written
        assert admin.hgetall("test__presence__a") == {GROUP.encode(): b"1"}
    finally:
        await counts.stop()
        admin.close()


async def test_changes_while_redis_is_down_are_not_kept_and_every_count_is_written_again(
    target: RedisTarget, redis_server: RedisServer
) -> None:
    counts = Presence(target, "a")
    try:
        counts.joined(GROUP)
        await eventually(lambda: counts._synced_at > 0, 3, "a first write")
        redis_server.stop()
        churn(counts, CHURN // 5)
        counts.joined("wc.kept")
        with pytest.raises(Exception):  # noqa: B017, PT011 (whatever redis-py raises for a dead server)
            async with asyncio.timeout(timeout(5)):
                await counts.refresh()
        assert_nothing_kept(counts, {GROUP: 1, "wc.kept": 1})  # the next write rewrites them all
        assert counts._rewrite
        redis_server.start()  # empty, on the same port
        with redis.Redis.from_url(redis_server.url) as admin:
            expected = {GROUP.encode(): b"1", b"wc.kept": b"1"}
            await eventually(lambda: admin.hgetall("test__presence__a") == expected, 10, "every count written again")
    finally:
        await counts.stop()
