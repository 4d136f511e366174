"""Rolling restart: two ``serve`` processes behind Debian's nginx, one drained while traffic flows.

The processes share one Redis (a real ``redis-server``) and one secret, and nginx (the shipped
``deploy/nginx/webchannel.conf``) has both as upstreams. Draining one (SIGTERM) stops its
listening socket, so nginx sends new connections to the other; its subscribers are closed with
1012 and a client that reconnects at once lands on the other process through the same nginx
address and gets every message published from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import signal
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

import tests.nginx
from tests.e2e.helpers import create_channel, http_client, publish, users_connected, wait_exit, ws_url
from tests.harness import RedisServer, ServerProcess, base_config, run_serve, timeout, wait_for
from tests.nginx import Nginx, proxying
from tests.waiting import eventually

pytestmark = [
    pytest.mark.slow,  # nginx, two servers and a Redis
    pytest.mark.needs("nginx"),
]

SERVICE_RESTART = 1012
RECONNECTS = 5
"""A client gives up after this many connections in a row (a bound, not a policy)."""


@contextlib.contextmanager
def two_processes_behind_nginx(
    tmp_path: Path, redis_server: RedisServer, **server: object
) -> Iterator[tuple[Nginx, ServerProcess, ServerProcess]]:
    config = base_config(redis={"url": redis_server.url}, server=dict(server))
    processes = [run_serve(tmp_path, config, name=name) for name in ("a", "b")]
    try:
        for process in processes:
            process.wait_listening()
        upstreams = [f"{p.host}:{p.port}" for p in processes]
        with proxying(tmp_path / "nginx", upstreams) as nginx:
            yield nginx, processes[0], processes[1]
    finally:
        for process in processes:
            process.stop()


@dataclass
class ReconnectingSubscriber:
    """A subscriber that reconnects at once (same URL, so through nginx) when closed with 1012."""

    url: str
    received: list[bytes] = field(default_factory=list)
    connected_at: list[float] = field(default_factory=list)
    closed_at: list[float] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)

    async def run(self) -> None:
        for _ in range(RECONNECTS):
            async with connect(self.url, open_timeout=timeout(20), max_size=None) as ws:
                self.connected_at.append(time.monotonic())
                try:
                    async for message in ws:
                        assert isinstance(message, bytes)
                        self.received.append(message)
                except websockets.ConnectionClosed:
                    pass
            self.closed_at.append(time.monotonic())
            self.close_codes.append(ws.close_code)
            if ws.close_code != SERVICE_RESTART:
                return


def holder(*processes: ServerProcess) -> ServerProcess | None:
    """The one process with a subscriber connected (read from its own /metrics, not through nginx)."""
    holding = [p for p in processes if users_connected(p.url) > 0]
    return holding[0] if len(holding) == 1 else None


async def test_a_client_reconnecting_after_1012_gets_every_message_published_after_it_reconnects(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with two_processes_behind_nginx(tmp_path, redis_server, drain_window=1.0) as (nginx, a, b):
        channel_id, token = create_channel(nginx.url)
        subscriber = ReconnectingSubscriber(ws_url(nginx.url, channel_id, token))
        listening = asyncio.create_task(subscriber.run())
        try:
            victim = await asyncio.to_thread(wait_for, lambda: holder(a, b), 10, "the subscriber to connect")
            other = b if victim is a else a
            published: list[tuple[int, float, int]] = []  # (sequence number, when sent, status)
            async with http_client() as client:

                async def publish_one() -> None:
                    seq = len(published)
                    sent = time.monotonic()
                    response = await publish(client, nginx.url, channel_id, b"%d" % seq, token=token)
                    published.append((seq, sent, response.status_code))

                for _ in range(20):
                    await publish_one()
                victim.signal(signal.SIGTERM)
                # Publish on (about one every 10 ms) through the drain, the reconnection and 200 more.
                deadline = time.monotonic() + timeout(30)
                while (
                    len(subscriber.connected_at) < 2
                    or sum(t >= subscriber.connected_at[1] for _, t, _ in published) < 200
                ):
                    assert time.monotonic() < deadline, f"no reconnection: {subscriber}"
                    assert not listening.done(), listening
                    await publish_one()
                    await asyncio.sleep(0.01)  # the publisher's pace
            reconnected = subscriber.connected_at[1]
            after = [(seq, status) for seq, sent, status in published if sent >= reconnected]
            assert [status for _, status in after] == [204] * len(after)
            expected = {b"%d" % seq for seq, _ in after}
            await asyncio.to_thread(
                wait_for, lambda: expected <= set(subscriber.received), 10, "every message published after reconnecting"
            )
            assert subscriber.close_codes == [SERVICE_RESTART]
            assert wait_exit(victim, 10) == 0
            # The client is now on the other process.
            await asyncio.to_thread(wait_for, lambda: users_connected(other.url) == 1, 10, "the gauge")
            received = [int(m) for m in subscriber.received]
            assert received == sorted(received), "messages out of order"
            assert len(received) == len(set(received)), "a message arrived twice"
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listening


# --- many subscribers ---------------------------------------------------------------------------

MANY = 5000
CHANNELS = 50


def make_room_in_nginx(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test nginx with room for ``MANY`` clients and as many upstream connections."""
    main_config = tests.nginx._main_config

    def roomier(prefix: Path, site_path: Path) -> str:
        text = main_config(prefix, site_path)
        assert "worker_connections 1024;" in text
        text = text.replace("worker_connections 1024;", f"worker_connections {2 * MANY + 1000};")
        return f"worker_rlimit_nofile {2 * MANY + 2000};\n{text}"

    monkeypatch.setattr(tests.nginx, "_main_config", roomier)


@dataclass
class Client:
    """One of many subscribers: connects, and reconnects once after a 1012."""

    url: str
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    closed_at: float | None = None
    close_code: int | None = None
    reconnected_at: float | None = None
    received: int = 0

    async def run(self, gate: asyncio.Semaphore) -> None:
        async with gate:
            ws = await connect(self.url, open_timeout=timeout(60), max_size=None)
        self.connected.set()
        async with ws:
            try:
                async for _ in ws:
                    self.received += 1
            except websockets.ConnectionClosed:
                pass
        self.closed_at, self.close_code = time.monotonic(), ws.close_code
        if self.close_code != SERVICE_RESTART:
            return
        async with connect(self.url, open_timeout=timeout(60), max_size=None) as again:
            self.reconnected_at = time.monotonic()
            async for _ in again:
                self.received += 1


@pytest.mark.parametrize("drain_window", [2.0, 8.0], ids=["default-window", "wider-window"])
async def test_5000_subscribers_drained_at_once_are_reestablished_through_nginx(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, drain_window: float
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < MANY + 1000:
        pytest.skip(f"open-files hard limit {hard} is too low for {MANY} client sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    make_room_in_nginx(monkeypatch)
    try:
        with two_processes_behind_nginx(tmp_path, redis_server, drain_window=drain_window) as (nginx, a, b):
            channels = [create_channel(nginx.url) for _ in range(CHANNELS)]
            clients = [Client(ws_url(nginx.url, *channels[i % CHANNELS])) for i in range(MANY)]
            gate = asyncio.Semaphore(100)
            tasks = [asyncio.create_task(c.run(gate)) for c in clients]
            try:
                connect_started = time.monotonic()
                async with asyncio.timeout(timeout(300)):
                    await asyncio.gather(*(c.connected.wait() for c in clients))
                connect_seconds = time.monotonic() - connect_started
                held_by_a, held_by_b = users_connected(a.url), users_connected(b.url)
                assert held_by_a + held_by_b == MANY
                victim, other, held = (a, b, held_by_a) if held_by_a >= held_by_b else (b, a, held_by_b)
                signalled = time.monotonic()
                victim.signal(signal.SIGTERM)

                def drained_clients_reconnected() -> bool:
                    assert not any(t.done() and t.exception() for t in tasks), [t for t in tasks if t.done()]
                    return sum(c.closed_at is not None for c in clients) >= held and not any(
                        c.closed_at is not None and c.reconnected_at is None for c in clients
                    )

                await eventually(drained_clients_reconnected, 120, "every drained client to reconnect", interval=0.1)
                assert wait_exit(victim, 10) == 0
                moved = [c for c in clients if c.reconnected_at is not None]
                assert len(moved) == held
                assert {c.close_code for c in moved} == {SERVICE_RESTART}
                await asyncio.to_thread(wait_for, lambda: users_connected(other.url) == MANY, 10, "the gauge")

                # Every client, moved or not, still gets its channel's messages.
                async with http_client() as http:
                    for channel_id, token in channels:
                        assert (await publish(http, nginx.url, channel_id, b"after", token=token)).status_code == 204
                await eventually(
                    lambda: sum(c.received for c in clients) >= MANY, 60, "every client to get a message", interval=0.1
                )

                last = max(c.reconnected_at for c in moved if c.reconnected_at is not None) - signalled
                gaps = sorted(c.reconnected_at - c.closed_at for c in moved if c.reconnected_at and c.closed_at)
                print(
                    f"\n{MANY} subscribers through nginx connected in {connect_seconds:.1f}s; "
                    f"{len(moved)} drained from one process (window {drain_window:g} s) all re-established "
                    "on the other "
                    f"{last:.2f}s after SIGTERM; per client, close to reconnected: median "
                    f"{statistics.median(gaps) * 1000:.0f} ms, p99 {gaps[int(len(gaps) * 0.99)] * 1000:.0f} ms, "
                    f"max {gaps[-1] * 1000:.0f} ms"
                )
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
