"""The benchmark's scenarios (the rows of bench/README.md): integrity, latency, throughput, fanout, connections.

Each scenario gets a started target and the run's :class:`Sizes`, creates its own channel and
returns a flat dict of figures (JSON-ready). Messages are 100 bytes unless stated and are
checked byte for byte by :class:`bench.payload.Tracker`. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .client import ClientError, Endpoint, Publisher, Subscriber, subscribe
from .payload import Sequence, Tracker, now_ns, percentile
from .system import busy_seconds, cpu_seconds, rss_bytes
from .targets import Target

Result = dict[str, Any]
PUBLISH_TIMEOUT = 10.0
"""webchannel answers 503 within 2 s when its layer is stuck; 10 s means the server is gone."""


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does; :data:`QUICK` is the CI smoke's."""

    message_size: int = 100
    latency_messages: int = 2000
    latency_warmup: int = 50
    throughput_seconds: float = 10.0
    throughput_publishers: int = 16
    fanout_subscribers: int = 500
    fanout_messages: int = 200
    fanout_publishers: int = 4
    connections: int = 5000
    handshake_concurrency: int = 64
    drain_quiet_seconds: float = 2.0
    drain_limit_seconds: float = 60.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Sizes()
QUICK = Sizes(
    latency_messages=200,
    latency_warmup=20,
    throughput_seconds=2.0,
    fanout_subscribers=100,
    fanout_messages=50,
    connections=500,
    drain_quiet_seconds=1.0,
    drain_limit_seconds=20.0,
)


def ms(ns: float) -> float:
    return round(ns / 1e6, 3)


def latency_figures(latencies_ns: list[int]) -> Result:
    return {
        "p50_ms": ms(percentile(latencies_ns, 0.50)),
        "p99_ms": ms(percentile(latencies_ns, 0.99)),
        "max_ms": ms(max(latencies_ns, default=0)),
    }


class Meter:
    """CPU use of the server's processes and of the generator over a scenario's measured phase.

    Set up and draining are left out, so a side at 100% really was the limit while it counted.
    """

    def __init__(self, pids: Callable[[], list[int]], broker_cpu: Callable[[], float | None] = lambda: None) -> None:
        self._pids = pids
        self._broker_cpu = broker_cpu
        self._server = self._generator = self._machine = self._started = 0.0
        self._broker: float | None = None
        self.figures: Result = {}

    def start(self) -> None:
        self._server, self._generator = cpu_seconds(self._pids()), time.process_time()
        self._broker = self._broker_cpu()
        self._machine, self._started = busy_seconds(), time.perf_counter()

    def stop(self) -> None:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        pids = self._pids()
        server = cpu_seconds(pids) - self._server
        generator = time.process_time() - self._generator
        other = busy_seconds() - self._machine - server - generator
        broker = self._broker_cpu()
        self.figures = {
            "measured_s": round(elapsed, 3),
            "server_cpu_percent": round(100 * server / elapsed, 1) if pids else None,
            "generator_cpu_percent": round(100 * generator / elapsed, 1),
            # Only meaningful when the server's processes are known (else they count as "other").
            "other_cpu_percent": round(100 * max(other, 0) / elapsed, 1) if pids else None,
        }
        if broker is not None and self._broker is not None:  # Redis, counted in the server's figure too
            self.figures["redis_cpu_percent"] = round(100 * (broker - self._broker) / elapsed, 2)


async def settle(done: Callable[[], bool], progress: Callable[[], int], quiet: float, limit: float) -> None:
    """Wait until ``done()``, or ``progress()`` stood still for ``quiet`` seconds, or ``limit`` passed."""
    deadline = time.monotonic() + limit
    last, last_change = progress(), time.monotonic()
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        current = progress()
        if current != last:
            last, last_change = current, time.monotonic()
        elif time.monotonic() - last_change > quiet:
            return


async def open_subscribers(
    endpoint: Endpoint, callbacks: list[Any], concurrency: int
) -> tuple[list[Subscriber], list[str], float]:
    """Open one subscriber per callback, ``concurrency`` handshakes at a time.

    Returns the open subscribers, the errors of those that failed and the seconds it took.
    """
    semaphore = asyncio.Semaphore(concurrency)
    errors: list[str] = []

    async def one(callback: Any) -> Subscriber | None:
        async with semaphore:
            try:
                return await subscribe(endpoint, callback)
            except ClientError as exc:
                errors.append(str(exc))
                return None

    started = time.perf_counter()
    opened = await asyncio.gather(*(one(callback) for callback in callbacks))
    elapsed = time.perf_counter() - started
    return [s for s in opened if s is not None], errors, elapsed


async def close_all(subscribers: list[Subscriber]) -> None:
    """Drop the client side at once: the target is stopped right after a scenario anyway."""
    for subscriber in subscribers:
        subscriber.abort()
    await asyncio.sleep(0)


# --- integrity --------------------------------------------------------------------------------


async def integrity(target: Target, sizes: Sizes, meter: Meter) -> Result:
    """An empty message, all 256 byte values and 512 KiB must each arrive exactly, as binary frames."""
    channel = await target.new_channel()
    payloads = {
        "empty": b"",
        "all_byte_values": bytes(range(256)),
        "512_KiB": random.Random(4).randbytes(512 * 1024),
    }
    inbox: asyncio.Queue[bytes] = asyncio.Queue()
    subscriber = await subscribe(channel.subscribe, lambda data, _arrived: inbox.put_nowait(data))
    publisher = Publisher(channel.publish)
    checks: Result = {}
    meter.start()
    try:
        for name, payload in payloads.items():
            status = await publisher.publish(payload, PUBLISH_TIMEOUT)
            try:
                got = await asyncio.wait_for(inbox.get(), 5)
                verdict = "ok" if got == payload else f"different bytes ({len(got)} received, {len(payload)} sent)"
            except TimeoutError:
                verdict = "not delivered within 5 s"
            if not 200 <= status < 300:
                verdict = f"publish answered {status}"
            checks[name] = verdict
        await asyncio.sleep(0.2)
        if not inbox.empty():
            checks["extra"] = f"{inbox.qsize()} unexpected message(s)"
        if subscriber.text:
            checks["frames"] = f"{subscriber.text} text frame(s), expected binary"
        meter.stop()
    finally:
        publisher.close()
        await subscriber.close()
    return {"passed": all(v == "ok" for v in checks.values()), "checks": checks}


# --- latency ----------------------------------------------------------------------------------


async def latency(target: Target, sizes: Sizes, meter: Meter) -> Result:
    """One subscriber; each publish waits for its 2xx and its delivery before the next."""
    channel = await target.new_channel()
    loop = asyncio.get_running_loop()
    tracker = Tracker(sizes.message_size)
    arrived: asyncio.Future[None] | None = None

    def on_message(data: bytes, arrival: int) -> None:
        tracker(data, arrival)
        if arrived is not None and not arrived.done():
            arrived.set_result(None)

    subscriber = await subscribe(channel.subscribe, on_message)
    publisher = Publisher(channel.publish)
    sequence = Sequence(0, sizes.message_size)
    timeouts = 0
    try:
        while sequence.next_seq < sizes.latency_warmup + sizes.latency_messages:
            if sequence.next_seq == sizes.latency_warmup:
                tracker.latencies_ns.clear()
                meter.start()
            arrived = loop.create_future()
            seq, body = sequence.body()
            if not sequence.record(seq, await publisher.publish(body, PUBLISH_TIMEOUT)):
                continue
            try:
                await asyncio.wait_for(arrived, 5)
            except TimeoutError:
                timeouts += 1
                if timeouts >= 3 or not subscriber.is_open:
                    break
        meter.stop()
    finally:
        publisher.close()
        cut_off = not subscriber.is_open
        await subscriber.close()
    return {
        "messages": sizes.latency_messages,
        "warmup": sizes.latency_warmup,
        **latency_figures(tracker.latencies_ns),
        **_losses([tracker], {0: sequence}),
        "rejected": sequence.rejected,
        "delivery_timeouts": timeouts,
        "close_code": subscriber.close_code if cut_off else None,
    }


# --- throughput -------------------------------------------------------------------------------


async def throughput(target: Target, sizes: Sizes, meter: Meter) -> Result:
    """16 keep-alive publishers as fast as answers come, one subscriber reading as fast as it can."""
    channel = await target.new_channel()
    tracker = Tracker(sizes.message_size)
    subscriber = await subscribe(channel.subscribe, tracker)
    cut_off_at: list[float] = []
    subscriber.closed.add_done_callback(lambda _f: cut_off_at.append(time.perf_counter()))
    sequences = {p: Sequence(p, sizes.message_size) for p in range(sizes.throughput_publishers)}
    errors: list[str] = []

    async def publish_until(sequence: Sequence, deadline: float) -> None:
        publisher = Publisher(channel.publish)
        feeder = sequence.feeder(lambda _seq: time.perf_counter() < deadline)
        try:
            while time.perf_counter() < deadline and len(errors) <= 100:
                try:
                    await publisher.publish_all(feeder, PUBLISH_TIMEOUT)
                except ClientError as exc:
                    errors.append(str(exc))
        finally:
            publisher.close()

    meter.start()
    started = time.perf_counter()
    started_ns = now_ns()
    await asyncio.gather(*(publish_until(s, started + sizes.throughput_seconds) for s in sequences.values()))
    publishing_ended = time.perf_counter()
    meter.stop()
    accepted = sum(s.count for s in sequences.values())
    await settle(
        lambda: tracker.received >= accepted or not subscriber.is_open,
        lambda: tracker.received,
        sizes.drain_quiet_seconds,
        sizes.drain_limit_seconds,
    )
    cut_off = not subscriber.is_open
    await subscriber.close()
    window = max(publishing_ended - started, (tracker.last_ns - started_ns) / 1e9)
    losses = _losses([tracker], sequences)
    return {
        "publishers": sizes.throughput_publishers,
        "seconds": round(publishing_ended - started, 3),
        "delivered_per_s": round(tracker.received / window, 1),
        "accepted_per_s": round(accepted / (publishing_ended - started), 1),
        "accepted": accepted,
        "rejected": _merge(s.rejected for s in sequences.values()),
        "publish_errors": len(errors),
        "first_publish_error": errors[0] if errors else None,
        **losses,
        "lost_percent": round(100 * losses["lost"] / accepted, 2) if accepted else 0.0,
        **latency_figures(tracker.latencies_ns),
        "cut_off": cut_off,
        "close_code": subscriber.close_code if cut_off else None,
        "cut_off_after_s": round(cut_off_at[0] - started, 3) if cut_off and cut_off_at else None,
    }


# --- fanout -----------------------------------------------------------------------------------


async def fanout(target: Target, sizes: Sizes, meter: Meter) -> Result:
    """500 subscribers on one channel; 200 messages from 4 publishers, each waiting for its 2xx.

    Several publishers, as in a deployment where many workers publish: with one publisher
    waiting for each answer, every message's round trip passes through the event loop of the
    process that took the publish and through the generator's, and with ``serve --workers``
    no process is busy while those round trips are the limit.
    """
    channel = await target.new_channel()
    trackers = [Tracker(sizes.message_size) for _ in range(sizes.fanout_subscribers)]
    subscribers, open_errors, _ = await open_subscribers(channel.subscribe, trackers, sizes.handshake_concurrency)
    publishers = [Publisher(channel.publish) for _ in range(sizes.fanout_publishers)]
    sequences = {p: Sequence(p, sizes.message_size) for p in range(sizes.fanout_publishers)}
    share = [len(range(p, sizes.fanout_messages, sizes.fanout_publishers)) for p in sequences]
    meter.start()
    try:
        started_ns = now_ns()
        await asyncio.gather(
            *(
                publisher.publish_all(sequence.feeder(lambda seq, n=n: seq < n), PUBLISH_TIMEOUT)
                for publisher, sequence, n in zip(publishers, sequences.values(), share, strict=True)
            )
        )
        expected = sum(s.count for s in sequences.values()) * len(subscribers)
        await settle(
            lambda: sum(t.received for t in trackers) >= expected,
            lambda: sum(t.received for t in trackers),
            sizes.drain_quiet_seconds,
            sizes.drain_limit_seconds,
        )
        meter.stop()
    finally:
        for publisher in publishers:
            publisher.close()
    cut_off = sum(1 for s in subscribers if not s.is_open)
    await close_all(subscribers)
    delivered = sum(t.received for t in trackers)
    last_ns = max((t.last_ns for t in trackers), default=started_ns)
    latencies = [value for t in trackers for value in t.latencies_ns]
    return {
        "subscribers": len(subscribers),
        "subscribe_errors": len(open_errors),
        "messages": sizes.fanout_messages,
        "publishers": sizes.fanout_publishers,
        "deliveries": delivered,
        "deliveries_per_s": round(delivered / max((last_ns - started_ns) / 1e9, 1e-9), 1),
        "rejected": _merge(s.rejected for s in sequences.values()),
        **_losses(trackers, sequences),
        **latency_figures(latencies),
        "cut_off": cut_off,
    }


# --- connections ------------------------------------------------------------------------------


async def connections(target: Target, sizes: Sizes, meter: Meter) -> Result:
    """Open thousands of idle subscribers: memory each costs the server, and handshakes per second."""
    channel = await target.new_channel()
    warm, _, _ = await open_subscribers(channel.subscribe, [None] * 10, 10)
    for subscriber in warm:
        await subscriber.close()
    await asyncio.sleep(0.5)
    pids = target.pids()
    before = rss_bytes(pids)
    meter.start()
    subscribers, errors, elapsed = await open_subscribers(
        channel.subscribe, [None] * sizes.connections, sizes.handshake_concurrency
    )
    meter.stop()
    await asyncio.sleep(1.0)
    after = rss_bytes(target.pids())
    still_open = sum(1 for s in subscribers if s.is_open)
    await close_all(subscribers)
    return {
        "requested": sizes.connections,
        "opened": len(subscribers),
        "still_open": still_open,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "subscriptions_per_s": round(len(subscribers) / elapsed, 1) if elapsed else 0.0,
        "memory_per_socket_kib": round((after - before) / len(subscribers) / 1024, 2) if pids and subscribers else None,
        "rss_before_mib": round(before / 2**20, 1) if pids else None,
        "rss_after_mib": round(after / 2**20, 1) if pids else None,
        "server_processes": len(pids),
        "concurrency": sizes.handshake_concurrency,
    }


def _merge(counts: Iterable[dict[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for count in counts:
        for key, value in count.items():
            merged[key] = merged.get(key, 0) + value
    return merged


def _losses(trackers: list[Tracker], sequences: dict[int, Sequence]) -> Result:
    """Totals over all subscribers, and with several subscribers how many were affected."""
    lost = [t.lost(sequences) for t in trackers]
    figures: Result = {
        "lost": sum(lost),
        "reordered": sum(t.reordered for t in trackers),
        "duplicated": sum(t.duplicates for t in trackers),
        "corrupt": sum(t.corrupt for t in trackers),
    }
    if len(trackers) > 1:
        figures["subscribers_with"] = {
            "loss": sum(1 for n in lost if n),
            "reordering": sum(1 for t in trackers if t.reordered),
            "duplicates": sum(1 for t in trackers if t.duplicates),
            "corruption": sum(1 for t in trackers if t.corrupt),
        }
        figures["most_lost_by_one_subscriber"] = max(lost, default=0)
    return figures


SCENARIOS: dict[str, Callable[[Target, Sizes, Meter], Awaitable[Result]]] = {
    "integrity": integrity,
    "latency": latency,
    "throughput": throughput,
    "fanout": fanout,
    "connections": connections,
}
