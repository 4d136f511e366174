"""``webchannel_delivery_lag_seconds`` on a real server: one observation per message and process,
however many subscribers wrote it, in the documented buckets; through Redis, in every process
that has subscribers; under ``serve --workers``, summed over the workers."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    create_channel,
    http_client,
    metric_value,
    metrics_text,
    publish,
    recv_binary,
    subscribe,
)
from tests.harness import RedisServer, ServerProcess, base_config, run_serve
from tests.waiting import eventually

LAG = "webchannel_delivery_lag_seconds"
BUCKETS = [
    "0.0005",
    "0.001",
    "0.0025",
    "0.005",
    "0.01",
    "0.025",
    "0.05",
    "0.1",
    "0.25",
    "0.5",
    "1.0",
    "2.5",
    "5.0",
    "10.0",
]


def lag_count(server: ServerProcess) -> float:
    return metric_value(metrics_text(server.url), f"{LAG}_count") or 0.0


async def fan_out(publisher: ServerProcess, subscribers: list[ServerProcess], per_server: int, messages: int) -> None:
    """``per_server`` subscribers on each of ``subscribers``, ``messages`` publishes through ``publisher``,
    every one received by every subscriber."""
    channel_id, token = create_channel(publisher.url)
    async with contextlib.AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(subscribe(server.url, channel_id, token))
            for server in subscribers
            for _ in range(per_server)
        ]
        async with http_client() as client:
            for n in range(messages):
                response = await publish(client, publisher.url, channel_id, b"m%d" % n, token=token)
                assert response.status_code == 204, response.text
        for ws in sockets:
            assert [await recv_binary(ws) for _ in range(messages)] == [b"m%d" % n for n in range(messages)]


async def test_the_lag_is_observed_once_per_message_not_once_per_subscriber(shared_server: ServerProcess) -> None:
    before = lag_count(shared_server)
    await fan_out(shared_server, [shared_server], per_server=20, messages=5)
    await eventually(lambda: lag_count(shared_server) == before + 5, 10, "five observations")
    text = metrics_text(shared_server.url)
    assert metric_value(text, f"{LAG}_count") == before + 5  # still five, not a hundred
    assert metric_value(text, f"{LAG}_bucket", {"le": "+Inf"}) == before + 5
    assert (metric_value(text, f"{LAG}_sum") or 0.0) > 0


def test_the_buckets_go_from_half_a_millisecond_to_ten_seconds(shared_server: ServerProcess) -> None:
    text = metrics_text(shared_server.url)
    found = re.findall(rf'^{LAG}_bucket\{{le="([^"]+)"\}}', text, re.M)
    assert found == [*BUCKETS, "+Inf"]


async def test_a_message_without_subscribers_is_not_observed(shared_server: ServerProcess) -> None:
    before = lag_count(shared_server)
    channel_id, token = create_channel(shared_server.url)
    async with http_client() as client:
        response = await publish(client, shared_server.url, channel_id, b"nobody", token=token)
        assert response.status_code == 204
    assert lag_count(shared_server) == before


@pytest.mark.slow  # two servers and a Redis
async def test_through_redis_each_process_with_subscribers_observes_each_message_once(
    redis_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = redis_pair
    before = lag_count(a), lag_count(b)
    await fan_out(a, [a, b], per_server=5, messages=4)
    await eventually(lambda: (lag_count(a), lag_count(b)) == (before[0] + 4, before[1] + 4), 10, "four in each")
    # Published on a, written on b: b's lag crosses Redis and is measured with the wall clock.
    assert (metric_value(metrics_text(b.url), f"{LAG}_sum") or 0.0) > 0


@pytest.mark.slow  # a supervisor, two workers and a Redis
async def test_under_workers_one_scrape_counts_each_message_once_per_worker_with_subscribers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    server = run_serve(tmp_path, base_config(redis={"url": redis_server.url}), args=["--workers", "2"])
    try:
        server.wait_listening()
        # 30 subscribers: the kernel spreads them over both workers (all on one: odds 2**-29).
        await fan_out(server, [server], per_server=30, messages=5)
        workers = {
            line.split("[", 1)[1].split("]", 1)[0]
            for line in server.output().splitlines()
            if "webchannel.access" in line and '"WS ' in line and line.endswith(" connected")
        }
        assert len(workers) == 2
        await eventually(lambda: lag_count(server) == 10, 10, "five observations in each worker")
        assert [lag_count(server) for _ in range(5)] == [10] * 5  # whichever worker answers
    finally:
        server.stop()
