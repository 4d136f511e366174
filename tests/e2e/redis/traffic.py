"""Traffic for failure tests: a publisher at a fixed cadence, subscribers that record what
arrives, and ``/readyz`` watchers, all timestamped on one monotonic clock.

With every publish's answer and every arrival recorded, a test can say exactly which
publishes answered 204 never reached a subscriber, and when ``/readyz`` turned back to 200
relative to them. Every task stops on an event the test sets, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import dataclass, field

import httpx
import websockets

from tests.e2e.helpers import publish, subscribe
from tests.harness import timeout
from tests.waiting import eventually

END = b"end"
"""The last message a test publishes: a subscriber that receives it has received everything before."""


def payload(seq: int) -> bytes:
    return b"seq:%d" % seq


def seq_of(data: bytes) -> int | None:
    return int(data[4:]) if data.startswith(b"seq:") else None


@dataclass(frozen=True)
class Publication:
    """One publish: its sequence number, when it was sent and answered, and the status."""

    seq: int
    sent: float
    answered: float
    status: int


@dataclass
class Publisher:
    """Publishes ``seq:N`` through one server every ``interval`` seconds, one request at a time
    (each answered before the next is sent, so order is defined), until ``stop`` is set."""

    client: httpx.AsyncClient
    base_url: str
    channel_id: str
    token: str
    interval: float = 0.01
    publications: list[Publication] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        started = time.monotonic()
        seq = 0
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = await publish(self.client, self.base_url, self.channel_id, payload(seq), token=self.token)
                status = response.status_code
            except httpx.HTTPError:
                status = 0  # no answer at all: recorded, never a 204
            self.publications.append(Publication(seq, sent, time.monotonic(), status))
            seq += 1
            delay = started + seq * self.interval - time.monotonic()
            if delay > 0:  # pacing of the load, not synchronisation
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    def answered(self, status: int) -> list[Publication]:
        return [p for p in self.publications if p.status == status]


@dataclass
class Subscriber:
    """A subscriber socket that records the arrival time of each ``seq:N`` until :data:`END`.

    If the server closes it, the close code is recorded and it reconnects (a client would);
    messages published while it was away are, correctly, not expected.
    """

    base_url: str
    channel_id: str
    token: str
    name: str = "subscriber"
    received: dict[int, float] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)
    connected_at: list[float] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, give_up: asyncio.Event) -> None:
        while not give_up.is_set() and not self.ended.is_set():
            try:
                async with subscribe(self.base_url, self.channel_id, self.token) as ws:
                    self.connected_at.append(time.monotonic())
                    self.ready.set()
                    await self._read(ws)
            except websockets.ConnectionClosed as exc:
                self.closes.append(exc.rcvd.code if exc.rcvd is not None else None)
            except (OSError, websockets.InvalidStatus, TimeoutError) as exc:
                self.closes.append(getattr(getattr(exc, "response", None), "status_code", None))
            if not self.ended.is_set():
                with contextlib.suppress(TimeoutError):  # a client's reconnect delay
                    await asyncio.wait_for(give_up.wait(), 0.05)

    async def _read(self, ws: websockets.ClientConnection) -> None:
        while True:
            data = await ws.recv()
            assert isinstance(data, bytes), f"{self.name}: a text frame {data[:40]!r}"
            if data == END:
                self.ended.set()
                return
            seq = seq_of(data)
            if seq is not None:
                self.received.setdefault(seq, time.monotonic())
                self.order.append(seq)


@dataclass
class ReadyzWatcher:
    """Polls ``/readyz`` of one server every ``interval`` seconds, recording ``(sent, answered, status)``."""

    client: httpx.AsyncClient
    base_url: str
    interval: float = 0.02
    samples: list[tuple[float, float, int]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            sent = time.monotonic()
            try:
                status = (await self.client.get(f"{self.base_url}/readyz")).status_code
            except httpx.HTTPError:
                status = 0
            self.samples.append((sent, time.monotonic(), status))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

    def first(self, status: int, after: float) -> tuple[float, float, int] | None:
        """The first sample sent after ``after`` that answered ``status``."""
        return next((s for s in self.samples if s[0] >= after and s[2] == status), None)

    def statuses_between(self, start: float, end: float) -> set[int]:
        return {status for sent, answered, status in self.samples if sent >= start and answered <= end}


STEADY_SECONDS = 0.5
"""How long a publisher runs, every subscriber receiving, before a test breaks something."""


async def steady_delivery(publisher: Publisher, subscribers: list[Subscriber]) -> None:
    """Wait until the publisher has run :data:`STEADY_SECONDS` and every subscriber receives."""
    started = time.monotonic()
    await eventually(
        lambda: time.monotonic() - started >= STEADY_SECONDS and all(s.received for s in subscribers),
        10,
        "steady delivery before the outage",
        interval=0.02,
    )


async def first_answer(watcher: ReadyzWatcher, status: int, after: float, seconds: float = 10) -> float:
    """When the first ``/readyz`` poll sent after ``after`` that answered ``status`` was answered."""
    sample = await eventually(
        lambda: watcher.first(status, after),
        seconds,
        f"/readyz of {watcher.base_url} to answer {status}",
        interval=0.01,
    )
    return sample[1]


async def sent_after(publisher: Publisher, after: float, count: int, seconds: float = 10) -> None:
    """Wait until ``count`` publishes were sent after ``after``."""
    await eventually(
        lambda: sum(p.sent >= after for p in publisher.publications) >= count,
        seconds,
        f"{count} publishes after /readyz turned 200",
        interval=0.02,
    )


async def settle(subscribers: list[Subscriber], publisher: Publisher) -> None:
    """Publish :data:`END` until every subscriber has it: everything published before has arrived."""

    async def every_subscriber_ended() -> bool:
        if all(s.ended.is_set() for s in subscribers):
            return True
        await publish(publisher.client, publisher.base_url, publisher.channel_id, END, token=publisher.token)
        return False

    await eventually(every_subscriber_ended, 10, "the end marker to reach every subscriber")


async def wait_event(event: asyncio.Event, seconds: float, what: str) -> None:
    """Wait for ``event`` to be set (no polling); fail after ``timeout(seconds)``."""
    try:
        async with asyncio.timeout(timeout(seconds)):
            await event.wait()
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout(seconds):.1f}s waiting for {what}") from None


def lost_after_204(publisher: Publisher, subscriber: Subscriber, since: float = 0.0) -> list[Publication]:
    """Publishes sent after ``since`` that answered 204 and never reached ``subscriber``."""
    return [p for p in publisher.answered(204) if p.sent >= since and p.seq not in subscriber.received]


def in_order(subscriber: Subscriber) -> bool:
    return subscriber.order == sorted(subscriber.order) and len(set(subscriber.order)) == len(subscriber.order)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
