"""Soak test: hold many WebSocket subscribers, publish at a steady rate, check every delivery.

Run from the repository root::

    python -m bench.soak                                   # 5,000 subscribers, 100 channels, 20 msg/s, 10 min
    python -m bench.soak --duration 30 --subscribers 1000 --channels 50
    python -m bench.soak --redis-url redis://127.0.0.1:6379/0
    python -m bench.soak --url http://host:8080 --api-key KEY [--server-pid PID]

Without ``--url`` it starts its own ``manage.py serve`` (a temporary config, an ephemeral loopback
port, the in-process channel layer unless ``--redis-url`` is given) and stops it with SIGTERM at the
end. Subscribers are spread round-robin over the channels and all connect before publishing starts,
so each one must receive every message of its channel exactly once and in order. Messages are
published round-robin over the channels at ``--rate`` per second; publishes to one channel are
sequential (each answered before the next), which is the ordering the product guarantees.

Each payload is ``--payload-size`` bytes: a header (channel index, sequence number, send time on
this process's ``perf_counter`` clock) followed by fixed non-UTF-8 padding, so a subscriber can
check that the bytes are exactly the ones published and measure publish-to-delivery latency.
Latency is measured from just before the POST to when this client reads the frame, so it
includes the client's own delays. To tell who caused a slow interval, each progress line also
gives the publish (HTTP 204) p99, the server's RSS and CPU, this client's CPU and event-loop lag,
and the CPU used on the machine by other processes (load generator and server share the cores).

Exit status: 0 only if no message was lost, reordered, duplicated or corrupted, no subscriber
was disconnected or failed to connect, and every publish answered 204; 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import re
import resource
import secrets
import signal
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

REPO = Path(__file__).resolve().parent.parent
CHANNELS_PATH = "/webchannel/v1/channels"

HEADER = struct.Struct(">IQd")
"""Payload header: channel index, sequence number in that channel, send time (``perf_counter``)."""

SERVER_START_SECONDS = 30.0
SERVER_STOP_SECONDS = 15.0
"""SIGTERM drains over ``server.drain_window`` (2 s by default); past this the server is killed."""

CLOSE_ALL_SECONDS = 60.0
HTTP_TIMEOUT_SECONDS = 10.0
LAG_PROBE_SECONDS = 0.05
MAX_DISCONNECT_LINES = 10
"""Disconnects are printed as they happen, up to this many; the summary counts them all."""

_LISTENING = re.compile(r"Listening on TCP address (\S+):(\d+)")


class SetupError(Exception):
    """The soak could not start (server, channels, subscribers): reported in one line, exit 1."""


def say(text: str) -> None:
    """Print and flush at once, so progress shows up when stdout is a file or a pipe."""
    print(text, flush=True)


# --- options ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """The command line, parsed and checked (see ``--help``)."""

    subscribers: int
    channels: int
    rate: float
    duration: float
    report_every: float
    payload_size: int
    connect_concurrency: int
    drain_timeout: float
    url: str | None
    api_key: str | None
    server_pid: int | None
    redis_url: str | None
    server_log: Path | None
    json_path: Path | None


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Command-line options; inconsistent combinations are usage errors (exit 2)."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--subscribers", type=int, default=5000, help="WebSocket subscribers to hold (default 5000)")
    add("--channels", type=int, default=100, help="channels they are spread over (default 100)")
    add("--rate", type=float, default=20.0, help="messages published per second, all channels (default 20)")
    add("--duration", type=float, default=600.0, help="seconds of publishing (default 600)")
    add("--report-every", type=float, default=60.0, help="seconds between progress lines (default 60)")
    add("--payload-size", type=int, default=100, help=f"bytes per message, at least {HEADER.size} (default 100)")
    add("--connect-concurrency", type=int, default=50, help="WebSocket handshakes in flight (default 50)")
    add("--drain-timeout", type=float, default=15.0, help="seconds to wait for the last deliveries (default 15)")
    add("--url", help="target an existing deployment (http://host:port) instead of starting a server")
    add("--api-key", help="API key of the deployment given with --url")
    add("--server-pid", type=int, help="with --url: PID of the server process, to read its RSS and CPU")
    add("--redis-url", help="start the server with this Redis channel layer instead of the in-process one")
    add("--server-log", type=Path, help="keep the started server's log in this file")
    add("--json", dest="json_path", type=Path, help="also write the figures to this JSON file")
    ns = parser.parse_args(argv)
    if ns.url and not ns.api_key:
        parser.error("--url needs --api-key")
    if ns.url and (ns.redis_url or ns.server_log):
        parser.error("--redis-url and --server-log only apply to the server this script starts (no --url)")
    if ns.server_pid and not ns.url:
        parser.error("--server-pid only applies with --url")
    if ns.subscribers < 1 or ns.channels < 1 or ns.connect_concurrency < 1:
        parser.error("--subscribers, --channels and --connect-concurrency must be at least 1")
    if ns.rate <= 0 or ns.duration <= 0 or ns.report_every <= 0:
        parser.error("--rate, --duration and --report-every must be positive")
    if ns.payload_size < HEADER.size:
        parser.error(f"--payload-size must be at least {HEADER.size}")
    return Options(**vars(ns))


# --- the server under test -------------------------------------------------------------------


@dataclass
class Target:
    """Where the soak runs: base URL, API key, and the server's PID when it is known."""

    url: str
    api_key: str
    pid: int | None
    description: str
    log_path: Path | None = None
    stop_status: str = ""


def raise_open_files_limit(needed: int) -> None:
    """Every subscriber is a file descriptor here as well as in the server: lift soft to hard."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < needed:
        say(f"warning: open-files limit {soft} is below the {needed} this run needs; raise it (ulimit -n)")


def server_config(opts: Options, api_key: str) -> str:
    """A minimal TOML config: ephemeral loopback port, fixed secrets, room for every subscriber."""
    q = json.dumps  # a JSON string is a valid TOML basic string
    lines = [
        "[server]",
        f"listen_address = {q('127.0.0.1:0')}",
        f"max_connections = {max(10000, opts.subscribers + 100)}",
        "[channel]",
        f"secret_key = {q(secrets.token_urlsafe(32))}",
        f"api_keys = [{q(api_key)}]",
    ]
    if opts.redis_url:
        lines += ["[redis]", f"url = {q(opts.redis_url)}"]
    return "\n".join(lines) + "\n"


def server_env() -> dict[str, str]:
    """This environment without WC_* overrides or a test settings module (pytest exports one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WC_") and k != "DJANGO_SETTINGS_MODULE"}
    env["WC_LOG"] = "info"  # the "Listening on" line tells us the port
    return env


def wait_listening(proc: subprocess.Popen[bytes], log_path: Path) -> str:
    """The server's base URL once its log says it listens (bounded poll: nothing else to wait on)."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            return f"http://{match.group(1)}:{match.group(2)}"
        if proc.poll() is not None:
            raise SetupError(f"server exited with status {proc.returncode}:\n{log_tail(log_path)}")
        time.sleep(0.05)
    raise SetupError(f"server did not listen within {SERVER_START_SECONDS:.0f} s:\n{log_tail(log_path)}")


def stop_server(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM and a bounded wait (SIGKILL after it); says how the server ended."""
    if proc.poll() is not None:
        return f"server had already exited with status {proc.returncode}"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        status = proc.wait(timeout=SERVER_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=SERVER_STOP_SECONDS)
        return f"server did not exit within {SERVER_STOP_SECONDS:.0f} s of SIGTERM: killed"
    return f"server exited with status {status} {time.monotonic() - started:.1f} s after SIGTERM"


@contextlib.contextmanager
def local_server(opts: Options, workdir: Path) -> Iterator[Target]:
    """Our own ``manage.py serve`` for the block, stopped with SIGTERM whatever happens."""
    api_key = secrets.token_urlsafe(24)
    config_path = workdir / "soak.toml"
    config_path.write_text(server_config(opts, api_key))
    log_path = opts.server_log or workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "-c", str(config_path)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(),
        )
    layer = "Redis" if opts.redis_url else "in-process"
    target = Target("", api_key, proc.pid, f"own `manage.py serve`, {layer} channel layer", log_path)
    try:
        target.url = wait_listening(proc, log_path)
        yield target
    finally:
        target.stop_status = stop_server(proc)


def log_tail(path: Path | None, lines: int = 20) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# --- process figures from /proc --------------------------------------------------------------


class ProcessMeter:
    """RSS and CPU share of one process, read from /proc (Linux); ``None`` where unreadable."""

    _ticks = os.sysconf("SC_CLK_TCK")

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._last = (time.monotonic(), self._cpu_seconds())

    def rss_mib(self) -> float | None:
        if self.pid is None:
            return None
        try:
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return None

    def _cpu_seconds(self) -> float | None:
        if self.pid is None:
            return None
        try:
            with open(f"/proc/{self.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime

    def cpu_percent(self) -> float | None:
        """CPU used since the previous call, in percent of one core."""
        now, cpu = time.monotonic(), self._cpu_seconds()
        (then, before), self._last = self._last, (now, cpu)
        if cpu is None or before is None or now <= then:
            return None
        return 100 * (cpu - before) / (now - then)


class MachineMeter(ProcessMeter):
    """CPU busy time of the whole machine (all cores), from /proc/stat.

    The load generator and the server share the machine; whatever else runs on it shows up as
    latency too, so the report gives the CPU that neither of them used.
    """

    def __init__(self) -> None:
        super().__init__(None)
        self._last = (time.monotonic(), self._cpu_seconds())

    def _cpu_seconds(self) -> float | None:
        try:
            with open("/proc/stat") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / self._ticks


# --- channels, subscribers, counters ---------------------------------------------------------


@dataclass(eq=False)
class Channel:
    """A channel and what was published to it; publishes to one channel are sequential."""

    index: int
    channel_id: str
    token: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_seq: int = 0
    failed: set[int] = field(default_factory=set)
    """Sequence numbers whose publish did not answer 204: not expected anywhere."""
    subscribers: int = 0

    @property
    def published(self) -> int:
        return self.next_seq - len(self.failed)


@dataclass(eq=False)
class Subscriber:
    """One socket's view of its channel: the next sequence number due and what was skipped."""

    index: int
    channel: Channel
    ws: ClientConnection | None = None
    task: asyncio.Task[None] | None = None
    next_seq: int = 0
    missing: set[int] = field(default_factory=set)
    received: int = 0
    reordered: int = 0
    duplicated: int = 0
    disconnected: bool = False
    close_code: int | None = None

    def record(self, seq: int) -> None:
        """Account for one message: in order, after a gap, late (reordered) or again (duplicate)."""
        self.received += 1
        if seq == self.next_seq:
            self.next_seq += 1
        elif seq > self.next_seq:
            self.missing.update(range(self.next_seq, seq))
            self.next_seq = seq + 1
        elif seq in self.missing:
            self.missing.discard(seq)
            self.reordered += 1
        else:
            self.duplicated += 1

    def gaps(self) -> int:
        """Messages skipped so far (a later one already arrived): lost unless they come late."""
        failed = self.channel.failed
        return len(self.missing - failed) if failed else len(self.missing)

    def lost(self) -> int:
        """Once publishing is over: published messages of the channel this socket never got."""
        tail = self.channel.next_seq - self.next_seq - sum(1 for s in self.channel.failed if s >= self.next_seq)
        return self.gaps() + max(tail, 0)

    def caught_up(self) -> bool:
        return self.disconnected or self.next_seq >= self.channel.next_seq


@dataclass
class Stats:
    """Counters shared by the readers, the publisher and the reporter (one event loop, no locks)."""

    padding: bytes
    delivered: int = 0
    corrupt: int = 0
    sent: int = 0
    publish_errors: Counter[str] = field(default_factory=Counter)
    connect_errors: Counter[str] = field(default_factory=Counter)
    close_codes: Counter[str] = field(default_factory=Counter)
    disconnected: int = 0
    latencies: list[float] = field(default_factory=list)
    publish_times: list[float] = field(default_factory=list)
    all_latencies: array[float] = field(default_factory=lambda: array("d"))
    all_publish_times: array[float] = field(default_factory=lambda: array("d"))
    loop_lag: float = 0.0
    """Longest this event loop woke up late in the current interval (client-side delay)."""
    stopping: bool = False

    def on_frame(self, sub: Subscriber, frame: bytes | str, now: float) -> None:
        """Check one frame: binary, exactly the published bytes, for this channel; then its order."""
        if not isinstance(frame, bytes) or len(frame) != HEADER.size + len(self.padding):
            self.corrupt += 1
            return
        channel_index, seq, sent_at = HEADER.unpack_from(frame)
        channel = sub.channel
        if channel_index != channel.index or seq >= channel.next_seq or frame[HEADER.size :] != self.padding:
            self.corrupt += 1
            return
        self.delivered += 1
        self.latencies.append(now - sent_at)
        sub.record(seq)

    def on_disconnect(self, sub: Subscriber, code: int | None, reason: str) -> None:
        sub.disconnected, sub.close_code = True, code
        self.disconnected += 1
        self.close_codes[str(code)] += 1
        if self.disconnected <= MAX_DISCONNECT_LINES:
            say(f"subscriber {sub.index} (channel {sub.channel.index}) disconnected: code {code} {reason!r}")


def padding(size: int) -> bytes:
    """Fixed filler after the header; not valid UTF-8, so a text-frame relay would show."""
    return bytes((0xFF - i) % 256 for i in range(size))


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (``None`` for no values)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


# --- setup: channels and subscribers ---------------------------------------------------------


async def create_channels(client: httpx.AsyncClient, target: Target, count: int) -> list[Channel]:
    """Ask the server for ``count`` fresh channels (random ids, so a shared deployment is safe)."""
    channels = []
    for index in range(count):
        response = await client.post(f"{target.url}{CHANNELS_PATH}", headers={"x-api-key": target.api_key})
        if response.status_code != 200:
            raise SetupError(f"creating a channel answered {response.status_code}: {response.text[:200]}")
        document = response.json()
        channels.append(Channel(index, document["channelId"], document["token"]))
    return channels


def subscribe_url(target: Target, channel: Channel) -> str:
    base = target.url.replace("http", "ws", 1)
    return f"{base}{CHANNELS_PATH}/{quote(channel.channel_id, safe='')}?access_token={quote(channel.token)}"


def describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


async def connect_subscribers(opts: Options, target: Target, channels: list[Channel], stats: Stats) -> list[Subscriber]:
    """Open every subscriber, at most ``--connect-concurrency`` handshakes at a time.

    The server joins the channel's group before it accepts, so a subscriber is in place as
    soon as its handshake completes: everything published afterwards is due to it.
    """
    gate = asyncio.Semaphore(opts.connect_concurrency)
    subscribers = [Subscriber(i, channels[i % len(channels)]) for i in range(opts.subscribers)]
    step = max(1, opts.subscribers // 10)
    done = 0

    async def open_one(sub: Subscriber) -> None:
        nonlocal done
        async with gate:
            try:
                sub.ws = await connect(
                    subscribe_url(target, sub.channel),
                    compression=None,  # what browsers negotiate varies; keep both ends' CPU for the relay
                    ping_interval=None,  # the server pings (server.ping_interval); we only answer
                    open_timeout=30,
                    close_timeout=5,
                    proxy=None,
                )
            except (OSError, TimeoutError, WebSocketException) as exc:
                stats.connect_errors[describe(exc)] += 1
                return
        sub.channel.subscribers += 1
        sub.task = asyncio.create_task(receive(sub, sub.ws, stats))
        done += 1
        if done % step == 0:
            say(f"  connected {done}/{opts.subscribers}")

    await asyncio.gather(*(open_one(sub) for sub in subscribers))
    return [sub for sub in subscribers if sub.ws is not None]


async def receive(sub: Subscriber, ws: ClientConnection, stats: Stats) -> None:
    """Read frames until the socket closes; a close before the end of the soak is a disconnect."""
    try:
        async for frame in ws:
            stats.on_frame(sub, frame, time.perf_counter())
    except ConnectionClosed:
        pass
    if not stats.stopping:
        stats.on_disconnect(sub, ws.close_code, ws.close_reason or "")


async def close_subscribers(subscribers: list[Subscriber]) -> None:
    """Close every socket cleanly (bounded); sockets still open after the bound are aborted."""
    gate = asyncio.Semaphore(200)

    async def close_one(sub: Subscriber) -> None:
        assert sub.ws is not None
        async with gate:
            await sub.ws.close()

    try:
        await asyncio.wait_for(asyncio.gather(*(close_one(s) for s in subscribers)), CLOSE_ALL_SECONDS)
    except TimeoutError:
        for sub in subscribers:
            if sub.ws is not None and sub.ws.transport is not None:
                sub.ws.transport.abort()
    await asyncio.gather(*(s.task for s in subscribers if s.task is not None))


# --- publishing ------------------------------------------------------------------------------


async def publish_one(client: httpx.AsyncClient, target: Target, channel: Channel, stats: Stats) -> None:
    """Publish the channel's next message with its token, after the previous one was answered."""
    async with channel.lock:
        seq = channel.next_seq
        channel.next_seq += 1
        sent_at = time.perf_counter()
        body = HEADER.pack(channel.index, seq, sent_at) + stats.padding
        url = f"{target.url}{CHANNELS_PATH}/{quote(channel.channel_id, safe='')}"
        headers = {"authorization": f"Bearer {channel.token}", "content-type": "application/octet-stream"}
        try:
            response = await client.post(url, content=body, headers=headers)
            error = None if response.status_code == 204 else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        stats.publish_times.append(time.perf_counter() - sent_at)
    if error is None:
        stats.sent += 1
    else:
        channel.failed.add(seq)
        stats.publish_errors[error] += 1


async def publish_at_rate(
    opts: Options, client: httpx.AsyncClient, target: Target, channels: list[Channel], stats: Stats, start: float
) -> None:
    """Start one publish every ``1/rate`` s on an absolute schedule (no drift), round-robin over
    the channels, then wait for the last answers. Publishes overlap across channels, so a slow
    answer does not slow the rate."""
    in_flight: set[asyncio.Task[None]] = set()
    n = 0
    while (due := start + n / opts.rate) < start + opts.duration:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(publish_one(client, target, channels[n % len(channels)], stats))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        n += 1
    await asyncio.gather(*in_flight)


async def wait_caught_up(subscribers: list[Subscriber], seconds: float) -> bool:
    """After the last publish: poll (bounded) until every open subscriber saw its channel's last message."""
    deadline = time.perf_counter() + seconds
    while not all(sub.caught_up() for sub in subscribers):
        if time.perf_counter() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# --- reporting -------------------------------------------------------------------------------


@dataclass
class Row:
    """One progress line: cumulative counts, and latency and CPU over the interval."""

    elapsed_s: float
    sent: int
    delivered: int
    expected: int
    lost: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    publish_p99_ms: float | None
    server_rss_mib: float | None
    server_cpu_pct: float | None
    client_cpu_pct: float | None
    client_lag_ms: float | None
    other_cpu_pct: float | None
    errors: int


@dataclass
class Run:
    """Everything the soak measured; shared by the progress lines, the summary and ``--json``."""

    opts: Options
    target: Target
    stats: Stats
    server: ProcessMeter
    client: ProcessMeter
    machine: MachineMeter
    start: float = 0.0
    channels: list[Channel] = field(default_factory=list)
    subscribers: list[Subscriber] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    connect_seconds: float = 0.0
    rss_idle_mib: float | None = None
    rss_connected_mib: float | None = None
    caught_up: bool = True

    def expected(self) -> int:
        return sum(ch.published * ch.subscribers for ch in self.channels)

    def take_row(self) -> Row:
        """Close the current interval: swap out its latencies, read RSS and CPU, print the line."""
        stats = self.stats
        latencies, stats.latencies = sorted(stats.latencies), []
        publish_times, stats.publish_times = sorted(stats.publish_times), []
        stats.all_latencies.extend(latencies)
        stats.all_publish_times.extend(publish_times)
        server_cpu, client_cpu = self.server.cpu_percent(), self.client.cpu_percent()
        machine_cpu = self.machine.cpu_percent()
        row = Row(
            elapsed_s=round(time.perf_counter() - self.start, 1),
            sent=stats.sent,
            delivered=stats.delivered,
            expected=self.expected(),
            lost=sum(sub.gaps() for sub in self.subscribers),
            p50_ms=ms(percentile(latencies, 0.50)),
            p99_ms=ms(percentile(latencies, 0.99)),
            max_ms=ms(latencies[-1] if latencies else None),
            publish_p99_ms=ms(percentile(publish_times, 0.99)),
            server_rss_mib=self.server.rss_mib(),
            server_cpu_pct=server_cpu,
            client_cpu_pct=client_cpu,
            client_lag_ms=ms(stats.loop_lag),
            other_cpu_pct=other_cpu(machine_cpu, server_cpu, client_cpu),
            errors=sum(stats.publish_errors.values()) + stats.disconnected + stats.corrupt,
        )
        stats.loop_lag = 0.0
        self.rows.append(row)
        say(progress_line(row))
        return row

    async def report_periodically(self) -> None:
        """A row every ``--report-every`` s of publishing; the last one is taken after the drain."""
        k = 1
        while (due := self.start + k * self.opts.report_every) < self.start + self.opts.duration - 0.5:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            self.take_row()
            k += 1

    async def watch_loop_lag(self) -> None:
        """Measure how late this loop wakes up: when it is late, so are the deliveries it reads,
        and the latency figures then describe the load generator rather than the server."""
        while True:
            before = time.perf_counter()
            await asyncio.sleep(LAG_PROBE_SECONDS)
            lag = time.perf_counter() - before - LAG_PROBE_SECONDS
            self.stats.loop_lag = max(self.stats.loop_lag, lag)

    def totals(self) -> dict[str, Any]:
        stats = self.stats
        latencies, publish_times = sorted(stats.all_latencies), sorted(stats.all_publish_times)
        rss = [r.server_rss_mib for r in self.rows if r.server_rss_mib is not None]
        return {
            "subscribers": len(self.subscribers),
            "channels": len(self.channels),
            "connect_seconds": round(self.connect_seconds, 1),
            "connect_errors": dict(stats.connect_errors),
            "sent": stats.sent,
            "publish_errors": dict(stats.publish_errors),
            "expected": self.expected(),
            "delivered": stats.delivered,
            "lost": sum(sub.lost() for sub in self.subscribers),
            "reordered": sum(sub.reordered for sub in self.subscribers),
            "duplicated": sum(sub.duplicated for sub in self.subscribers),
            "corrupt": stats.corrupt,
            "disconnected": stats.disconnected,
            "close_codes": dict(stats.close_codes),
            "caught_up": self.caught_up,
            "latency_ms": {q: ms(percentile(latencies, v)) for q, v in (("p50", 0.5), ("p99", 0.99), ("max", 1))},
            "publish_ms": {q: ms(percentile(publish_times, v)) for q, v in (("p50", 0.5), ("p99", 0.99), ("max", 1))},
            "client_max_loop_lag_ms": max((r.client_lag_ms or 0.0 for r in self.rows), default=None),
            "server_rss_mib": {
                "idle": self.rss_idle_mib,
                "connected": self.rss_connected_mib,
                "end": rss[-1] if rss else None,
                "max": max(rss) if rss else None,
            },
            "client_max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


def other_cpu(machine: float | None, server: float | None, client: float | None) -> float | None:
    """CPU used on this machine by neither the server nor the load generator (percent of a core)."""
    if machine is None or client is None:
        return None
    return max(0.0, machine - client - (server or 0.0))


def passed(totals: dict[str, Any]) -> bool:
    return (
        totals["subscribers"] > 0
        and totals["sent"] > 0
        and totals["delivered"] == totals["expected"]
        and not totals["connect_errors"]
        and not totals["publish_errors"]
        and all(totals[k] == 0 for k in ("lost", "reordered", "duplicated", "corrupt", "disconnected"))
    )


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def progress_line(row: Row) -> str:
    return (
        f"[{row.elapsed_s:7.1f}s] sent {row.sent} delivered {row.delivered}/{row.expected} lost {row.lost}"
        f" | latency p50 {fmt(row.p50_ms)} ms p99 {fmt(row.p99_ms)} ms max {fmt(row.max_ms)} ms"
        f" (publish p99 {fmt(row.publish_p99_ms)} ms)"
        f" | server RSS {fmt(row.server_rss_mib)} MiB CPU {fmt(row.server_cpu_pct, '.0f')}%"
        f" | client CPU {fmt(row.client_cpu_pct, '.0f')}% lag {fmt(row.client_lag_ms)} ms"
        f" | other CPU {fmt(row.other_cpu_pct, '.0f')}% | errors {row.errors}"
    )


def counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{key}: {n}" for key, n in sorted(counter.items())) or "none"


def summary(run: Run, totals: dict[str, Any], ok: bool) -> str:
    """The closing Markdown: totals, then one row per interval."""
    opts = run.opts
    lat, pub, rss = totals["latency_ms"], totals["publish_ms"], totals["server_rss_mib"]
    lines = [
        f"## webchannel soak: {'PASS' if ok else 'FAIL'}",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| server | {run.target.description}; {run.target.stop_status or 'not stopped by this script'} |",
        f"| subscribers | {totals['subscribers']} over {totals['channels']} channels,"
        f" connected in {totals['connect_seconds']} s; connect errors: {counts(totals['connect_errors'])} |",
        f"| publishing | {opts.rate:g} msg/s for {opts.duration:g} s, {opts.payload_size}-byte payloads |",
        f"| sent | {totals['sent']} |",
        f"| expected deliveries | {totals['expected']} |",
        f"| delivered | {totals['delivered']} |",
        f"| lost | {totals['lost']} |",
        f"| reordered | {totals['reordered']} |",
        f"| duplicated | {totals['duplicated']} |",
        f"| corrupt or misrouted | {totals['corrupt']} |",
        f"| disconnected | {totals['disconnected']} (close codes: {counts(totals['close_codes'])}) |",
        f"| publish errors | {sum(totals['publish_errors'].values())} ({counts(totals['publish_errors'])}) |",
        f"| latency p50 / p99 / max | {fmt(lat['p50'])} / {fmt(lat['p99'])} / {fmt(lat['max'])} ms |",
        f"| publish (HTTP 204) p50 / p99 / max | {fmt(pub['p50'])} / {fmt(pub['p99'])} / {fmt(pub['max'])} ms |",
        f"| client event loop, max lag | {fmt(totals['client_max_loop_lag_ms'])} ms |",
        f"| server RSS idle / connected / end / max | {fmt(rss['idle'])} / {fmt(rss['connected'])}"
        f" / {fmt(rss['end'])} / {fmt(rss['max'])} MiB |",
        f"| client max RSS | {fmt(totals['client_max_rss_mib'])} MiB |",
        "",
        "| elapsed s | sent | delivered | lost | p50 ms | p99 ms | max ms | publish p99 ms | server RSS MiB "
        "| server CPU % | client CPU % | client lag ms | other CPU % |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.elapsed_s:.0f} | {r.sent} | {r.delivered} | {r.lost} | {fmt(r.p50_ms)} | {fmt(r.p99_ms)}"
        f" | {fmt(r.max_ms)} | {fmt(r.publish_p99_ms)} | {fmt(r.server_rss_mib)} | {fmt(r.server_cpu_pct, '.0f')}"
        f" | {fmt(r.client_cpu_pct, '.0f')} | {fmt(r.client_lag_ms)} | {fmt(r.other_cpu_pct, '.0f')} |"
        for r in run.rows
    ]
    return "\n".join(lines)


# --- the run ---------------------------------------------------------------------------------


def freeze_long_lived_objects() -> None:
    """Keep the collector off the connections: a full collection over thousands of sockets'
    objects stalls this loop for hundreds of milliseconds (measured: up to 0.8 s at 5,000), which
    would show up as delivery latency that the load generator, not the server, caused."""
    gc.collect()
    gc.freeze()


async def soak(run: Run) -> None:
    """Create channels, connect subscribers, publish for the duration, drain, close."""
    opts, stats = run.opts, run.stats
    # Publishes to one channel are sequential, so at most one per channel is in flight: with a
    # connection for each, a slow server answer never queues a publish inside this client.
    limits = httpx.Limits(max_connections=opts.channels, max_keepalive_connections=opts.channels)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS, limits=limits, trust_env=False) as client:
        run.channels = await create_channels(client, run.target, opts.channels)
        run.rss_idle_mib = run.server.rss_mib()
        say(f"connecting {opts.subscribers} subscribers to {opts.channels} channels at {run.target.url}")
        began = time.perf_counter()
        run.subscribers = await connect_subscribers(opts, run.target, run.channels, stats)
        run.connect_seconds = time.perf_counter() - began
        freeze_long_lived_objects()
        run.rss_connected_mib = run.server.rss_mib()
        say(
            f"{len(run.subscribers)} subscribers connected in {run.connect_seconds:.1f} s"
            f" (errors: {counts(dict(stats.connect_errors))}); server RSS {fmt(run.rss_connected_mib)} MiB"
        )
        if not run.subscribers:
            raise SetupError("no subscriber could connect")
        say(f"publishing {opts.rate:g} msg/s for {opts.duration:g} s")
        for meter in (run.server, run.client, run.machine):
            meter.cpu_percent()  # the first interval's CPU figures start here, not at process start
        run.start = time.perf_counter()
        helpers = [asyncio.create_task(run.report_periodically()), asyncio.create_task(run.watch_loop_lag())]
        try:
            await publish_at_rate(opts, client, run.target, run.channels, stats, run.start)
            run.caught_up = await wait_caught_up(run.subscribers, opts.drain_timeout)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        run.take_row()
        stats.stopping = True
        await close_subscribers(run.subscribers)


def run_soak(opts: Options, workdir: Path) -> int:
    """Run against our own server or ``--url``; print the summary; exit status."""
    raise_open_files_limit(opts.subscribers + 100)
    run: Run | None = None
    try:
        with contextlib.ExitStack() as stack:
            if opts.url:
                target = Target(opts.url.rstrip("/"), opts.api_key or "", opts.server_pid, f"deployment at {opts.url}")
            else:
                target = stack.enter_context(local_server(opts, workdir))
            run = Run(
                opts,
                target,
                Stats(padding(opts.payload_size - HEADER.size)),
                ProcessMeter(target.pid),
                ProcessMeter(os.getpid()),
                MachineMeter(),
            )
            asyncio.run(soak(run))
    except (SetupError, httpx.HTTPError) as exc:
        say(f"soak could not run: {exc}")
        return 1
    assert run is not None
    totals = run.totals()
    ok = passed(totals)
    say("")
    say(summary(run, totals, ok))
    if not ok and run.target.log_path:
        say(f"\nlast lines of the server log:\n{log_tail(run.target.log_path)}")
    if opts.json_path:
        write_json(opts.json_path, run, totals, ok)
    return 0 if ok else 1


def write_json(path: Path, run: Run, totals: dict[str, Any], ok: bool) -> None:
    """The figures for tooling (bench/README.md's table, CI); the API key is left out."""
    options = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(run.opts).items() if k != "api_key"}
    document = {"passed": ok, "options": options, "totals": totals, "intervals": [asdict(r) for r in run.rows]}
    path.write_text(json.dumps(document, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="webchannel-soak-") as workdir:
        return run_soak(opts, Path(workdir))


if __name__ == "__main__":
    sys.exit(main())
