"""webchannel's channel layers used directly: in-memory and Redis pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from channels_api.events import relay_message
from channels_api.exceptions import LayerUnavailable
from channels_api.layers import InMemoryChannelLayer
from channels_api.readiness import round_trip
from channels_api.server.redis_layer import RedisPubSubChannelLayer
from tests.harness import timeout
from tests.waiting import eventually

from .helpers import closed_port_redis_url


async def receive(layer, channel: str) -> dict:
    async with asyncio.timeout(timeout(5)):
        return await layer.receive(channel)


async def receives_nothing(layer, channel: str, seconds: float = 0.1) -> bool:
    """True if nothing arrives on ``channel`` within ``seconds``."""
    task = asyncio.ensure_future(layer.receive(channel))
    done, _ = await asyncio.wait([task], timeout=seconds)
    if done:
        return False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True


# --- in-memory ---------------------------------------------------------------------

# ``InMemoryChannelLayer.group_send`` is annotated ``message: dict[str, Any]``, to which the TypedDict
# events (``RelayMessage``) are not assignable: each ``type: ignore[arg-type]`` below is that.


async def test_in_memory_group_send_delivers_to_every_member_in_order():
    layer = InMemoryChannelLayer()
    channels = [await layer.new_channel() for _ in range(3)]
    for channel in channels:
        await layer.group_add("g", channel)
    messages = [relay_message(f"m{i}".encode()) for i in range(100)]
    for message in messages:
        await layer.group_send("g", message)
    for channel in channels:
        assert [await receive(layer, channel) for _ in messages] == messages


async def test_in_memory_group_send_skips_channels_that_left_the_group():
    layer = InMemoryChannelLayer()
    stays, leaves = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", stays)
    await layer.group_add("g", leaves)
    await layer.group_discard("g", leaves)
    await layer.group_send("g", relay_message(b"x"))
    assert await receive(layer, stays) == relay_message(b"x")
    assert await receives_nothing(layer, leaves)


async def test_in_memory_group_membership_never_expires(monkeypatch):
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 2 * 24 * 3600)
    await layer.group_send("g", relay_message(b"two days later"))
    assert await receive(layer, channel) == relay_message(b"two days later")
    assert channel in layer._groups["g"]


async def test_in_memory_cancelled_receive_forgets_the_channel_and_its_groups():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("g1", channel)
    await layer.group_add("g2", channel)
    other = await layer.new_channel()
    await layer.group_add("g2", other)
    task = asyncio.ensure_future(layer.receive(channel))
    await eventually(lambda: layer._backlogs[channel]._waiter is not None, 5, "receive to wait")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert channel not in layer._backlogs
    assert channel not in layer._memberships
    assert "g1" not in layer._groups
    assert list(layer._groups["g2"]) == [other]
    await layer.group_send("g1", relay_message(b"nobody"))
    assert channel not in layer._backlogs


async def test_in_memory_overflow_returns_relay_overflow_with_dropped_count():
    layer = InMemoryChannelLayer(max_backlog_bytes=1000)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    for i in range(10):
        await layer.group_send("g", relay_message(bytes([i]) * 200))
    event = await receive(layer, channel)
    assert event == {"type": "relay.overflow", "dropped": 10}
    # After the overflow nothing is delivered any more: the subscriber is never silently skipped ahead.
    await layer.group_send("g", relay_message(b"later"))
    assert await receives_nothing(layer, channel)


async def test_in_memory_backlog_within_bound_delivers_everything():
    layer = InMemoryChannelLayer(max_backlog_bytes=1000)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    for round_ in range(20):  # far more than fits at once, read as it goes
        await layer.group_send("g", relay_message(bytes([round_]) * 200))
        await layer.group_send("g", relay_message(bytes([round_]) * 100))
        assert await receive(layer, channel) == relay_message(bytes([round_]) * 200)
        assert await receive(layer, channel) == relay_message(bytes([round_]) * 100)


async def test_in_memory_a_single_message_larger_than_the_bound_is_delivered():
    layer = InMemoryChannelLayer(max_backlog_bytes=100)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    await layer.group_send("g", relay_message(b"x" * 1000))
    assert await receive(layer, channel) == relay_message(b"x" * 1000)


async def test_in_memory_round_trip_succeeds_and_leaves_nothing_behind():
    layer = InMemoryChannelLayer()
    await round_trip(layer)
    assert layer._backlogs == {}
    assert layer._groups == {}
    assert layer._memberships == {}


# --- Redis pub/sub ------------------------------------------------------------------


def redis_layer(url: str, **kwargs) -> RedisPubSubChannelLayer:
    return RedisPubSubChannelLayer(hosts=[{"address": url, "socket_connect_timeout": 2}], **kwargs)


@contextlib.asynccontextmanager
async def flushed(*layers):
    try:
        yield layers
    finally:
        for layer in layers:
            await layer.flush()


async def test_redis_group_send_reaches_a_member_in_another_layer_instance_in_order(redis_server):
    async with flushed(redis_layer(redis_server.url), redis_layer(redis_server.url)) as (sender, receiver):
        channels = [await receiver.new_channel() for _ in range(2)]
        for channel in channels:
            await receiver.group_add("g", channel)
        await round_trip(receiver)  # the SUBSCRIBE for "g" was processed before the probe's
        messages = [relay_message(f"m{i}".encode() + bytes(range(256))) for i in range(200)]
        for message in messages:
            await sender.group_send("g", message)
        for channel in channels:
            assert [await receive(receiver, channel) for _ in messages] == messages


async def test_redis_group_send_reaches_members_of_both_layer_instances(redis_server):
    async with flushed(redis_layer(redis_server.url), redis_layer(redis_server.url)) as (a, b):
        on_a, on_b = await a.new_channel(), await b.new_channel()
        await a.group_add("g", on_a)
        await b.group_add("g", on_b)
        await round_trip(a)
        await round_trip(b)
        await a.group_send("g", relay_message(b"from a"))
        assert await receive(a, on_a) == relay_message(b"from a")
        assert await receive(b, on_b) == relay_message(b"from a")


async def test_redis_round_trip_succeeds(redis_server):
    async with flushed(redis_layer(redis_server.url)) as (layer,):
        await round_trip(layer)


async def test_redis_round_trip_raises_layer_unavailable_quickly_when_redis_is_stopped(redis_server):
    async with flushed(redis_layer(redis_server.url)) as (layer,):
        await round_trip(layer)
        redis_server.stop()
        started = time.monotonic()
        async with asyncio.timeout(timeout(5)):
            with pytest.raises(LayerUnavailable):
                await round_trip(layer)
        assert time.monotonic() - started < timeout(3)


async def test_redis_round_trip_raises_layer_unavailable_when_nothing_listens():
    async with flushed(redis_layer(closed_port_redis_url())) as (layer,):
        async with asyncio.timeout(timeout(5)):
            with pytest.raises(LayerUnavailable):
                await round_trip(layer)


async def test_redis_overflow_returns_relay_overflow_with_dropped_count(redis_server):
    async with flushed(redis_layer(redis_server.url, max_backlog_bytes=2000)) as (layer,):
        channel = await layer.new_channel()
        await layer.group_add("g", channel)
        await round_trip(layer)
        for i in range(20):
            await layer.group_send("g", relay_message(bytes([i]) * 300))
        await round_trip(layer)  # all 20 were delivered to the backlog before the probe came back
        event = await receive(layer, channel)
        assert event == {"type": "relay.overflow", "dropped": 20}
        await layer.group_send("g", relay_message(b"later"))
        await round_trip(layer)
        assert await receives_nothing(layer, channel)
