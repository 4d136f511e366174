"""A channel that empties leaves nothing behind: subscribers (WebSocket and event streams) of
many distinct channels come and go through the whole application, and every per-channel
structure of the channel layer (in-process, or Redis pub/sub against a real ``redis-server``)
and of the subscriber counts is empty again afterwards."""

from __future__ import annotations

import pytest
import redis
from channels.layers import get_channel_layer
from channels.testing import ApplicationCommunicator
from django.test import override_settings

from channels_api.presence import Presence
from channels_api.runtime import Runtime
from channels_api.server.redis_layer import WATCH_GROUP
from tests.common import make_token
from tests.harness import RedisServer, timeout
from tests.waiting import eventually
from webchannel_project.asgi import application

from .helpers import channel_path, redis_layers, subscriber

SOCKETS = 150
STREAMS = 30


async def event_stream_comes_and_goes(channel_id: str) -> None:
    """An event stream of ``channel_id`` opens (its first bytes arrive), then the client goes away."""
    path = f"{channel_path(channel_id)}/events"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": f"access_token={make_token(channel_id)}".encode(),
        "headers": [(b"host", b"testserver"), (b"accept", b"text/event-stream")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    communicator = ApplicationCommunicator(application, scope)
    try:
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(timeout(5))
        assert start["status"] == 200, start
        assert (await communicator.receive_output(timeout(5)))["type"] == "http.response.body"
        await communicator.send_input({"type": "http.disconnect"})
        await communicator.wait(timeout(5))
    finally:
        communicator.stop(exceptions=False)


async def churn(stem: str) -> None:
    for n in range(SOCKETS):
        async with subscriber(f"{stem}-socket-{n}"):
            pass
    for n in range(STREAMS):
        await event_stream_comes_and_goes(f"{stem}-stream-{n}")


@pytest.fixture
def counts(runtime: Runtime) -> Presence:
    """This process's subscriber counts, fresh for the test (without Redis unless the test says)."""
    return runtime.presence


def assert_counts_kept_nothing(counts: Presence) -> None:
    assert counts.local == {}
    assert counts._changed == set()
    assert counts._waiters == {}
    assert counts.others == {}


async def test_in_process_layer_keeps_nothing_of_channels_that_emptied(counts: Presence) -> None:
    await churn("churn-memory")
    layer = get_channel_layer()
    assert layer._groups == {}
    assert layer._memberships == {}
    assert layer._backlogs == {}
    assert_counts_kept_nothing(counts)


@pytest.mark.slow
async def test_redis_layer_keeps_nothing_of_channels_that_emptied(runtime: Runtime, redis_server: RedisServer) -> None:
    counts = runtime.presence = Presence(({"address": redis_server.url}, "churn-test"))
    with override_settings(CHANNEL_LAYERS=redis_layers(redis_server.url)):
        layer = get_channel_layer()
        try:
            await churn("churn-redis")
            loop_layer = layer._get_layer()
            watch = {loop_layer._get_group_channel_name(WATCH_GROUP)}
            assert loop_layer.channels == {}
            assert loop_layer.groups == {}
            (shard,) = loop_layer._shards
            assert shard._subscribed_to <= watch
            subscribed = {name.encode() for name in watch}
            await eventually(lambda: set(shard._pubsub.channels) <= subscribed, 5, "the UNSUBSCRIBEs")
            await counts.refresh()
            assert_counts_kept_nothing(counts)
            with redis.Redis.from_url(redis_server.url) as admin:
                assert admin.keys("churn-test__presence*") == []
        finally:
            await counts.stop()
            await layer.flush()
