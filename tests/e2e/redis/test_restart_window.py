"""A Redis restart loses no message silently except in a measured, documented window.

Two ``manage.py serve`` processes share one ``redis-server``. A publisher sends a numbered
message every 10 ms through process A; two subscribers sit on process B (and, in half of the
runs, one on A). The Redis server is killed by PID and started again on the same port (at
once, or after half a second down) while the publisher keeps going.

What holds, and is asserted:

- every publish answers 204 or 503 (503 while Redis is down, or while the process is
  restoring its subscriptions), and no subscriber is closed;
- B's ``/readyz`` answers 503 once its pub/sub connection is lost, and every publish sent
  after B's ``/readyz`` answered 200 again reaches B's subscribers, in order;
- every 204 reaches a subscriber on A, the process that answered it (a process refuses
  publishes while it restores its own subscriptions);
- the 204s that B's subscribers never got (published through A after Redis answered again
  but before B had resubscribed) are few: at most :data:`MAX_LOST_AFTER_204`.

Each run prints what it measured (``pytest -s``); the README gives the median of several runs.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.e2e.helpers import create_channel, http_client
from tests.e2e.redis.traffic import (
    Publisher,
    ReadyzWatcher,
    Subscriber,
    first_answer,
    in_order,
    lost_after_204,
    sent_after,
    settle,
    steady_delivery,
    wait_event,
)
from tests.harness import RedisServer, ServerProcess, timeout, wait_for
from tests.waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("quiet_httpx")]

MAX_LOST_AFTER_204 = 10
"""Publishes are 10 ms apart; A and B redial at the same moments, at least every 50 ms, and A
answers 204 only once its own subscription is back: rarely one is lost, never many."""
AFTER_READY_PUBLISHES = 50


@pytest.mark.parametrize("subscriber_on_a", [False, True], ids=["publisher-only-A", "subscriber-on-A"])
@pytest.mark.parametrize("refused_while_down", [0, 50], ids=["restarted-at-once", "down-half-a-second"])
async def test_a_redis_restart_loses_only_204s_published_before_the_other_process_resubscribed(
    redis_server: RedisServer,
    redis_pair: tuple[ServerProcess, ServerProcess],
    refused_while_down: int,
    subscriber_on_a: bool,
) -> None:
    a, b = redis_pair
    channel_id, token = create_channel(a.url)
    stop, give_up = asyncio.Event(), asyncio.Event()
    on_b = [Subscriber(b.url, channel_id, token, name=f"B{i}") for i in range(2)]
    on_a = [Subscriber(a.url, channel_id, token, name="A")] if subscriber_on_a else []
    subscribers = [*on_b, *on_a]
    async with http_client() as client:
        publisher = Publisher(client, a.url, channel_id, token)
        ready_b = ReadyzWatcher(client, b.url)
        tasks = [asyncio.create_task(s.run(give_up)) for s in subscribers]
        try:
            for s in subscribers:
                await wait_event(s.ready, 10, f"{s.name} to connect")
            tasks += [asyncio.create_task(publisher.run(stop)), asyncio.create_task(ready_b.run(stop))]
            await steady_delivery(publisher, subscribers)

            # Redis is stopped and started in threads: the publisher and the watcher keep going.
            killed = time.monotonic()
            await asyncio.to_thread(redis_server.stop)  # SIGKILL by PID
            lost_at = await first_answer(ready_b, 503, after=killed)
            await refused(publisher, refused_while_down, after=killed)
            await asyncio.to_thread(redis_server.start)  # an empty server on the same port
            answering = time.monotonic()
            ready_again = await first_answer(ready_b, 200, after=lost_at)
            await sent_after(publisher, ready_again, AFTER_READY_PUBLISHES)
            stop.set()
            await settle(subscribers, publisher)
        finally:
            stop.set()
            give_up.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout(15))

    lost = {s.name: lost_after_204(publisher, s) for s in subscribers}
    first_204 = min(p.answered for p in publisher.answered(204) if p.sent >= killed)
    print(
        f"\nrestart ({refused_while_down} publishes refused while down, subscriber on A: {subscriber_on_a}): "
        f"Redis answering again "
        f"{answering - killed:.3f}s after the kill, first 204 {first_204 - killed:.3f}s, B /readyz 503 "
        f"{lost_at - killed:.3f}s and 200 again {ready_again - killed:.3f}s after it; "
        f"{len(publisher.answered(503))} publishes answered 503; 204s never received: "
        + ", ".join(f"{name} {len(missed)}" for name, missed in lost.items())
    )
    assert {p.status for p in publisher.publications} <= {204, 503}
    for s in subscribers:
        assert s.closes == [], f"{s.name} was closed: {s.closes}"
        assert in_order(s), f"{s.name} received out of order"
    for s in on_a:
        assert lost[s.name] == [], f"204s from A that A's own subscriber missed: {lost[s.name]}"
    for s in on_b:
        missed = lost_after_204(publisher, s, since=ready_again)
        assert missed == [], f"{s.name} missed publishes sent after B's /readyz was 200 again: {missed}"
        assert len(lost[s.name]) <= MAX_LOST_AFTER_204, f"{s.name} missed {len(lost[s.name])} 204s"
    wait_for(lambda: "Redis pub/sub connection restored" in b.output(), 5, "B to log the restoration")


async def refused(publisher: Publisher, count: int, after: float) -> None:
    """Wait until ``count`` publishes sent after ``after`` were answered 503 (Redis stays down meanwhile)."""
    await eventually(
        lambda: sum(p.sent >= after and p.status == 503 for p in publisher.publications) >= count,
        10,
        f"{count} publishes refused while Redis was down",
        interval=0.01,
    )
