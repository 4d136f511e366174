"""Deployments sharing one Redis server are kept apart by ``redis.prefix``, not by database numbers.

Redis pub/sub ignores the database number (a PUBLISH on db 1 reaches a SUBSCRIBE on db 0), and
channel ids are chosen by clients, so two deployments on one server would deliver each other's
messages. Every Redis channel webchannel uses starts with ``redis.prefix`` (default
``webchannel``): two deployments with different prefixes share nothing, neither messages nor the
counts on ``/metrics``; processes with the same prefix are one deployment.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import create_channel, http_client, metric_value, metrics_text, publish, recv_binary, subscribe
from tests.harness import ServerProcess, base_config, serving
from tests.redis_servers import ConfiguredRedis, Monitor, redis_servers

pytestmark = pytest.mark.slow

CHANNEL_ID = "orders-42"  # the same id in both deployments, as independent clients would choose


@pytest.fixture
def shared_redis(tmp_path: Path) -> Iterator[ConfiguredRedis]:
    with redis_servers(tmp_path) as (server,):
        yield server


def counts(server: ServerProcess) -> tuple[float | None, float | None]:
    text = metrics_text(server.url)
    return metric_value(text, "webchannel_messages_published_total"), metric_value(
        text, "webchannel_messages_sent_total"
    )


async def ready(client: httpx.AsyncClient, *servers: ServerProcess) -> None:
    """Every server's readiness probe (its own Redis channels) has run at least once."""
    for server in servers:
        response = await client.get(f"{server.url}/readyz")
        assert response.status_code == 200, response.text


async def test_different_prefixes_on_one_redis_share_no_message_and_no_count(
    tmp_path: Path, shared_redis: ConfiguredRedis
) -> None:
    # Different database numbers too: they separate nothing in pub/sub, the prefix does.
    alpha_config = base_config(redis={"url": f"redis://127.0.0.1:{shared_redis.port}/1", "prefix": "alpha"})
    default_config = base_config(redis={"url": f"redis://127.0.0.1:{shared_redis.port}/2"})  # prefix "webchannel"
    with (
        Monitor(shared_redis, tmp_path / "monitor.log") as monitor,
        serving(tmp_path, alpha_config, name="alpha") as alpha,
        serving(tmp_path, default_config, name="default") as other,
    ):
        _, alpha_token = create_channel(alpha.url, CHANNEL_ID)
        _, other_token = create_channel(other.url, CHANNEL_ID)
        async with (
            http_client() as client,
            subscribe(alpha.url, CHANNEL_ID, alpha_token) as on_alpha,
            subscribe(other.url, CHANNEL_ID, other_token) as on_other,
        ):
            await ready(client, alpha, other)
            for server, token, body in [
                (alpha, alpha_token, b"alpha 1"),
                (other, other_token, b"other 1"),
                (alpha, alpha_token, b"alpha 2"),
                (other, other_token, b"other 2"),
            ]:
                response = await publish(client, server.url, CHANNEL_ID, body, token=token)
                assert response.status_code == 204, response.text
            # Redis delivers in the order it ran the PUBLISHes: a message from the other
            # deployment would arrive between these two.
            assert [await recv_binary(on_alpha) for _ in range(2)] == [b"alpha 1", b"alpha 2"]
            assert [await recv_binary(on_other) for _ in range(2)] == [b"other 1", b"other 2"]
            assert counts(alpha) == (2, 2)
            assert counts(other) == (2, 2)

        # Every pub/sub channel either deployment asked Redis for starts with its prefix,
        # readiness probes included, and the only keys are the subscriber counts (presence),
        # under the prefix too, each expiring.
        seen = monitor.channels()
        assert {command for command, _ in seen} >= {"PUBLISH", "SUBSCRIBE"}
        assert all(name.startswith(("alpha__group__", "webchannel__group__")) for _, name in seen), seen
        readiness = [name for _, name in seen if "__group__wc-readyz." in name]
        assert {name.split("__", 1)[0] for name in readiness} == {"alpha", "webchannel"}
        with shared_redis.client() as admin:
            keyspace = admin.info("keyspace")
            assert all(db["keys"] == db["expires"] for db in keyspace.values()), keyspace
            for db, prefix in ((1, "alpha"), (2, "webchannel")):
                admin.execute_command("SELECT", db)  # one connection: the client is used by this thread only
                keys = list(admin.keys("*"))
                assert all(key.startswith(f"{prefix}__presence") for key in keys), keys


async def test_processes_with_the_same_prefix_share_channels(tmp_path: Path, shared_redis: ConfiguredRedis) -> None:
    config = base_config(redis={"url": shared_redis.url})
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(serving(tmp_path, config, env={"WC_REDIS__PREFIX": "shared"}, name="first"))
        config["redis"]["prefix"] = "shared"
        second = stack.enter_context(serving(tmp_path, config, name="second"))
        _, token = create_channel(first.url, CHANNEL_ID)
        async with (
            http_client() as client,
            subscribe(first.url, CHANNEL_ID, token) as on_first,
            subscribe(second.url, CHANNEL_ID, token) as on_second,
        ):
            for i, server in enumerate([first, second, first]):
                response = await publish(client, server.url, CHANNEL_ID, b"m%d" % i, token=token)
                assert response.status_code == 204, response.text
            assert [await recv_binary(on_first) for _ in range(3)] == [b"m0", b"m1", b"m2"]
            assert [await recv_binary(on_second) for _ in range(3)] == [b"m0", b"m1", b"m2"]
            channels = shared_redis.pubsub_channels()
            assert channels, "nobody subscribed in Redis"
            assert all(name.startswith("shared__group__") for name in channels), channels
