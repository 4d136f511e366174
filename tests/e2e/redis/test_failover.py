"""A real Redis Sentinel failover, with webchannel configured with ``redis.sentinels`` and
``redis.master_name`` and never restarted.

One master, one replica, one sentinel (quorum 1, master down after 500 ms, failover timeout
2 s) and two ``manage.py serve`` processes. A publisher sends a numbered message every 10 ms
through process A; two subscribers sit on process B and one on A. The master is killed by PID.

What holds, and is asserted:

- publishes answer 503 (never a 204) from the kill until the sentinel has promoted the
  replica, then 204 again; nothing else is ever answered;
- subscribers stay connected and receive again: each process finds the new master through
  the sentinel and resubscribes there (``PUBSUB NUMSUB`` on the new master counts both);
- ``/readyz`` of both processes answers 503 once their pub/sub connection is lost, never 200
  while there is no master, and 200 again after the promotion;
- every 204 reaches the subscriber on A, the process that answered it; every publish sent
  after B's ``/readyz`` answered 200 again reaches B's subscribers, in order; the 204s B's
  subscribers never got (published through A after the promotion but before B had
  resubscribed on the new master) are at most :data:`MAX_LOST_AFTER_204`.

The test prints the outage it measured (``pytest -s``): kill to promotion, to the first 204
and to the first delivery on B.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from channels_api.names import group_name
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
from tests.harness import ServerProcess, base_config, serving, timeout, wait_for
from tests.redis_servers import ConfiguredRedis
from tests.sentinel import MASTER_NAME, SentinelDeployment, sentinel_deployment

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("quiet_httpx")]

MAX_LOST_AFTER_204 = 10
"""Publishes are 10 ms apart; A and B ask the sentinel for the master at the same moments, at
least every 50 ms, and A answers 204 only 75 ms after its own subscription is back on the new
master: none was lost in the runs measured, a process slowed down by load could lose a few."""
ANNOUNCE_SLACK_SECONDS = 0.05
"""The test hears the sentinel's ``+switch-master`` over its own connection, a little late."""
AFTER_READY_PUBLISHES = 50


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[SentinelDeployment]:
    with sentinel_deployment(tmp_path / "redis") as started:
        yield started


@pytest.fixture
def sentinel_pair(tmp_path: Path, deployment: SentinelDeployment) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two ``manage.py serve`` processes that find the Redis master through the sentinel."""
    config = base_config(redis={"sentinels": [deployment.sentinel_address], "master_name": MASTER_NAME})
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(serving(tmp_path, config, name="a"))
        b = stack.enter_context(serving(tmp_path, config, name="b"))
        yield a, b


async def test_a_failover_answers_503_until_the_replica_is_promoted_and_delivery_resumes_without_a_restart(
    deployment: SentinelDeployment, sentinel_pair: tuple[ServerProcess, ServerProcess]
) -> None:
    a, b = sentinel_pair
    channel_id, token = create_channel(a.url)
    stop, give_up = asyncio.Event(), asyncio.Event()
    on_b = [Subscriber(b.url, channel_id, token, name=f"B{i}") for i in range(2)]
    on_a = Subscriber(a.url, channel_id, token, name="A")
    subscribers = [*on_b, on_a]
    async with http_client() as client:
        publisher = Publisher(client, a.url, channel_id, token)
        ready = {"A": ReadyzWatcher(client, a.url), "B": ReadyzWatcher(client, b.url)}
        tasks = [asyncio.create_task(s.run(give_up)) for s in subscribers]
        try:
            for s in subscribers:
                await wait_event(s.ready, 10, f"{s.name} to connect")
            tasks.append(asyncio.create_task(publisher.run(stop)))
            tasks += [asyncio.create_task(watcher.run(stop)) for watcher in ready.values()]
            await steady_delivery(publisher, subscribers)

            with deployment.switch_watch() as switch:
                killed = await asyncio.to_thread(deployment.kill_master)  # SIGKILL by PID
                lost_at = {name: await first_answer(w, 503, after=killed, seconds=20) for name, w in ready.items()}
                await asyncio.to_thread(wait_for, deployment.promoted, 20, "the replica's promotion", 0.01)
                await asyncio.to_thread(wait_for, lambda: switch.seen, 5, "+switch-master")
                switched = switch.seen
                assert switched is not None
            ready_again = {
                name: await first_answer(w, 200, after=lost_at[name], seconds=20) for name, w in ready.items()
            }
            await sent_after(publisher, max(ready_again.values()), AFTER_READY_PUBLISHES, seconds=20)
            group = f"webchannel__group__{group_name(channel_id)}"  # the default redis.prefix
            numsub = await asyncio.to_thread(subscriptions_on, deployment.replica, group)
            stop.set()
            await settle(subscribers, publisher)
        finally:
            stop.set()
            give_up.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout(15))

    after_kill = [p for p in publisher.publications if p.sent >= killed]
    first_204 = min((p for p in after_kill if p.status == 204), key=lambda p: p.answered)
    first_delivery_on_b = min(on_b[0].received[p.seq] for p in after_kill if p.seq in on_b[0].received)
    lost = {s.name: lost_after_204(publisher, s) for s in subscribers}
    print(
        f"\nfailover: promotion announced {switched - killed:.3f}s after the kill; first 204 "
        f"{first_204.answered - killed:.3f}s, first delivery on B {first_delivery_on_b - killed:.3f}s; "
        f"/readyz 503 after {', '.join(f'{n} {t - killed:.3f}s' for n, t in lost_at.items())}, 200 again after "
        f"{', '.join(f'{n} {t - killed:.3f}s' for n, t in ready_again.items())}; "
        f"{sum(p.status == 503 for p in after_kill)} publishes answered 503; 204s never received: "
        + ", ".join(f"{name} {len(missed)}" for name, missed in lost.items())
    )
    assert {p.status for p in publisher.publications} <= {204, 503}
    assert first_204.answered >= switched - ANNOUNCE_SLACK_SECONDS, "a 204 before the replica was promoted"
    assert [p for p in after_kill if p.answered < first_204.answered and p.status != 503] == []
    for name, watcher in ready.items():
        answered_200 = [
            s for s in watcher.samples if s[0] >= lost_at[name] and s[1] < switched - ANNOUNCE_SLACK_SECONDS
        ]
        assert all(status == 503 for _, _, status in answered_200), f"{name}'s /readyz said 200 with no master"
        assert watcher.statuses_between(ready_again[name], time.monotonic()) <= {200}, f"{name} flapped"
    for s in subscribers:
        assert s.closes == [], f"{s.name} was closed: {s.closes}"
        assert in_order(s), f"{s.name} received out of order"
    assert lost[on_a.name] == [], f"204s from A that A's own subscriber missed: {lost[on_a.name]}"
    for s in on_b:
        missed = lost_after_204(publisher, s, since=ready_again["B"])
        assert missed == [], f"{s.name} missed publishes sent after B's /readyz was 200 again: {missed}"
        assert len(lost[s.name]) <= MAX_LOST_AFTER_204, f"{s.name} missed {len(lost[s.name])} 204s"
    assert numsub == 2, f"{numsub} processes subscribed to the channel on the new master, not A and B"


def subscriptions_on(server: ConfiguredRedis, channel: str) -> int:
    """How many connections are subscribed to ``channel`` on ``server`` (``PUBSUB NUMSUB``)."""
    with server.client() as client:
        return int(client.pubsub_numsub(channel)[0][1])
