"""The Redis layer after its pub/sub connection drops: it redials at once, restores every
subscription, and refuses publishes and subscribes (and readiness) until they are back.

The layer is used directly against a real ``redis-server``; a second layer instance plays
another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
import redis

from channels_api.events import relay_message
from channels_api.exceptions import LayerUnavailable
from channels_api.readiness import Readiness, round_trip
from channels_api.server.redis_layer import RedisPubSubChannelLayer
from tests.harness import RedisServer, timeout
from tests.waiting import eventually

PREFIX = "restore-test"
LOGGER = "channels_api.server.redis_layer"


@contextlib.asynccontextmanager
async def layers(url: str, count: int) -> AsyncIterator[list[RedisPubSubChannelLayer]]:
    made = [
        RedisPubSubChannelLayer(hosts=[{"address": url, "socket_connect_timeout": 2}], prefix=PREFIX)
        for _ in range(count)
    ]
    try:
        yield made
    finally:
        for layer in made:
            await layer.flush()


async def member(layer: RedisPubSubChannelLayer, group: str) -> str:
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    await round_trip(layer)  # the group's SUBSCRIBE was processed
    return channel


async def receive(layer: RedisPubSubChannelLayer, channel: str) -> dict:
    async with asyncio.timeout(timeout(5)):
        return await layer.receive(channel)


def admin(server: RedisServer) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=timeout(5))


async def test_while_its_subscriptions_are_restored_a_process_refuses_publishes_subscribes_and_readiness(
    redis_server: RedisServer,
) -> None:
    async with layers(redis_server.url, 2) as (receiver, sender):
        channel = await member(receiver, "g")
        redis_server.stop()
        await eventually(receiver.restoring, 5, "the layer to notice the lost pub/sub connection")

        with pytest.raises(LayerUnavailable, match="restoring"):
            await receiver.group_send("g", relay_message(b"refused"))
        with pytest.raises(LayerUnavailable, match="restoring"):
            await receiver.group_add("h", await receiver.new_channel())
        with pytest.raises(LayerUnavailable, match="restoring"):
            await Readiness(within=timeout(2)).check(receiver)

        redis_server.start()  # empty, same port: the subscription to "g" exists only here
        await eventually(lambda: not receiver.restoring(), 5, "the subscriptions to be restored")
        await sender.group_send("g", relay_message(b"after the restart"))
        assert await receive(receiver, channel) == relay_message(b"after the restart")
        await Readiness(within=timeout(2)).check(receiver)


async def test_a_pubsub_connection_killed_by_redis_is_redialled_with_every_subscription(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with layers(redis_server.url, 2) as (receiver, sender):
        channels = {group: await member(receiver, group) for group in ("g1", "g2", "g3")}
        with admin(redis_server) as client:
            assert client.client_kill_filter(_type="pubsub") == 1

        def restored() -> bool:
            return any("Redis pub/sub connection restored" in r.getMessage() for r in caplog.records)

        await eventually(restored, 5, "the restoration to be logged")
        for group, channel in channels.items():
            await sender.group_send(group, relay_message(group.encode()))
            assert await receive(receiver, channel) == relay_message(group.encode())
    lost = [r for r in caplog.records if "Redis pub/sub connection lost" in r.getMessage()]
    assert len(lost) == 1, [r.getMessage() for r in caplog.records]


async def test_a_message_that_cannot_be_decoded_is_dropped_without_stopping_delivery(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with layers(redis_server.url, 2) as (receiver, sender):
        channel = await member(receiver, "g")
        with admin(redis_server) as client:
            assert client.publish(f"{PREFIX}__group__g", b"\xc1 not msgpack") == 1
        await sender.group_send("g", relay_message(b"next"))
        assert await receive(receiver, channel) == relay_message(b"next")
        assert not receiver.restoring()
    assert any("could not be decoded" in r.getMessage() for r in caplog.records)
