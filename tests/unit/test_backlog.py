"""channels_api.backlog.Backlog: a byte-bounded queue that never drops silently."""

from __future__ import annotations

import asyncio

import pytest

from channels_api.backlog import OVERFLOWED, Backlog
from tests.harness import timeout

BLOCKED = 0.05
"""How long a get must stay blocked to count as blocking (a short, bounded wait)."""


def backlog(max_bytes: int = 10) -> Backlog:
    return Backlog(max_bytes, len)


async def assert_blocks(queue: Backlog) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), BLOCKED)


async def get(queue: Backlog) -> object:
    return await asyncio.wait_for(queue.get(), timeout(2))


async def test_items_come_out_in_fifo_order():
    queue = backlog(100)
    for item in (b"a", b"bb", b"ccc", b"", b"dddd"):
        queue.put_nowait(item)
    assert [await get(queue) for _ in range(5)] == [b"a", b"bb", b"ccc", b"", b"dddd"]


async def test_pending_bytes_count_what_is_queued():
    queue = backlog(100)
    assert queue.pending_bytes == 0
    queue.put_nowait(b"abc")
    queue.put_nowait(b"de")
    assert queue.pending_bytes == 5
    assert len(queue) == 2
    await get(queue)
    assert queue.pending_bytes == 2
    await get(queue)
    assert queue.pending_bytes == 0
    assert len(queue) == 0


async def test_size_of_decides_what_an_item_costs():
    queue = Backlog(100, lambda item: item["size"])
    queue.put_nowait({"size": 60})
    assert queue.pending_bytes == 60
    queue.put_nowait({"size": 41})
    assert queue.overflowed


async def test_put_that_reaches_the_bound_exactly_is_accepted():
    queue = backlog(10)
    queue.put_nowait(b"12345")
    queue.put_nowait(b"67890")
    assert not queue.overflowed
    assert queue.pending_bytes == 10
    assert [await get(queue), await get(queue)] == [b"12345", b"67890"]


async def test_put_past_the_bound_discards_pending_and_reports_overflow_once():
    queue = backlog(10)
    queue.put_nowait(b"12345")
    queue.put_nowait(b"6789")
    queue.put_nowait(b"ab")  # 11 bytes: past the bound
    assert queue.overflowed
    assert queue.pending_bytes == 0
    assert len(queue) == 0
    assert queue.dropped == 3
    assert await get(queue) is OVERFLOWED
    await assert_blocks(queue)


async def test_puts_after_overflow_are_counted_as_dropped_and_never_delivered():
    queue = backlog(4)
    queue.put_nowait(b"abc")
    queue.put_nowait(b"de")
    assert queue.dropped == 2
    assert await get(queue) is OVERFLOWED
    queue.put_nowait(b"x")
    queue.put_nowait(b"")
    assert queue.dropped == 4
    assert queue.pending_bytes == 0
    await assert_blocks(queue)
    await assert_blocks(queue)


async def test_puts_between_overflow_and_its_report_are_dropped_too():
    queue = backlog(4)
    queue.put_nowait(b"abc")
    queue.put_nowait(b"de")
    queue.put_nowait(b"f")
    assert queue.dropped == 3
    assert await get(queue) is OVERFLOWED
    await assert_blocks(queue)


async def test_single_item_larger_than_the_bound_into_an_empty_backlog_is_accepted():
    queue = backlog(10)
    queue.put_nowait(b"x" * 50)
    assert not queue.overflowed
    assert queue.pending_bytes == 50
    assert await get(queue) == b"x" * 50
    queue.put_nowait(b"y" * 50)
    assert await get(queue) == b"y" * 50


async def test_any_put_after_an_oversized_item_overflows():
    queue = backlog(10)
    queue.put_nowait(b"x" * 50)
    queue.put_nowait(b"")
    assert queue.overflowed
    assert await get(queue) is OVERFLOWED


async def test_memory_is_freed_as_items_are_taken():
    queue = backlog(10)
    for _ in range(100):
        queue.put_nowait(b"12345678")
        assert await get(queue) == b"12345678"
    assert not queue.overflowed
    assert queue.pending_bytes == 0


async def test_empty_backlog_blocks_get():
    await assert_blocks(backlog())


async def test_waiting_getter_wakes_on_put():
    queue = backlog()
    getter = asyncio.create_task(queue.get())
    done, _ = await asyncio.wait({getter}, timeout=BLOCKED)
    assert not done, "get returned from an empty backlog"
    queue.put_nowait(b"hi")
    assert await asyncio.wait_for(getter, timeout(2)) == b"hi"


async def test_waiting_getter_wakes_with_overflowed():
    queue = backlog(4)
    queue.put_nowait(b"abc")
    assert await get(queue) == b"abc"
    getter = asyncio.create_task(queue.get())
    done, _ = await asyncio.wait({getter}, timeout=BLOCKED)
    assert not done
    queue.put_nowait(b"abcd")
    queue.put_nowait(b"e")
    assert await asyncio.wait_for(getter, timeout(2)) is OVERFLOWED
    assert queue.dropped == 2


async def test_cancelled_get_does_not_lose_the_next_item():
    queue = backlog()
    await assert_blocks(queue)  # a get cancelled by the timeout
    queue.put_nowait(b"after")
    assert await get(queue) == b"after"


def test_overflowed_sentinel_reads_well():
    assert repr(OVERFLOWED) == "OVERFLOWED"


def is_small(item: object) -> bool:
    return isinstance(item, bytes) and len(item) < 3


async def test_take_while_takes_the_pending_items_in_order_and_frees_their_bytes():
    queue = backlog(max_bytes=100)
    for item in (b"a", b"bb", b"c"):
        queue.put_nowait(item)
    assert queue.take_while(is_small, 10) == [b"a", b"bb", b"c"]
    assert len(queue) == 0
    assert queue.pending_bytes == 0
    await assert_blocks(queue)


async def test_take_while_stops_at_the_first_item_not_wanted_and_leaves_it_first():
    queue = backlog(max_bytes=100)
    for item in (b"a", b"long", b"b"):
        queue.put_nowait(item)
    assert queue.take_while(is_small, 10) == [b"a"]
    assert await get(queue) == b"long"
    assert await get(queue) == b"b"


async def test_take_while_takes_at_most_limit_items():
    queue = backlog(max_bytes=100)
    for item in (b"a", b"b", b"c"):
        queue.put_nowait(item)
    assert queue.take_while(is_small, 2) == [b"a", b"b"]
    assert queue.pending_bytes == 1
    assert await get(queue) == b"c"


async def test_take_while_on_an_empty_or_overflowed_backlog_takes_nothing():
    queue = backlog(max_bytes=3)
    assert queue.take_while(is_small, 10) == []
    queue.put_nowait(b"ab")
    queue.put_nowait(b"cd")  # passes the bound: overflowed
    assert queue.take_while(is_small, 10) == []
    assert await get(queue) is OVERFLOWED


async def test_take_while_wakes_a_publisher_waiting_for_the_backlog_to_drain():
    queue = backlog(max_bytes=100)
    for _ in range(5):
        queue.put_nowait(b"x")
    drained = asyncio.ensure_future(queue.drained(1))
    await asyncio.sleep(0)
    assert not drained.done()
    assert len(queue.take_while(is_small, 4)) == 4
    await asyncio.wait_for(drained, timeout(2))
