"""The servers under test: webchannel (in-process or Redis layer), Nchan, or a user's deployment.

Each target starts its own processes on loopback (free ports, a private temporary directory),
pinned to the server's cores, and stops them by PID. A scenario asks a target for a fresh
channel and gets the URLs and headers to publish and subscribe with. webchannel and Redis are
started with the test harness's helpers (tests/harness.py), so the benchmark runs the server
exactly as the end-to-end tests do.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.harness import API_KEY, REPO, RedisServer, ServerProcess, base_config, clean_env, free_port, toml

from .client import Endpoint, post
from .system import Pinning, pin_process, process_tree

BENCH = Path(__file__).resolve().parent
CHANNELS = "/webchannel/v1/channels"
NCHAN_MODULE_PATHS = [
    Path("/usr/lib/nginx/modules/ngx_nchan_module.so"),
    Path("/usr/share/nginx/modules/ngx_nchan_module.so"),
    Path("/usr/lib64/nginx/modules/ngx_nchan_module.so"),
]
STOP_SECONDS = 10
START_SECONDS = 20


class TargetUnavailable(Exception):
    """A target cannot run on this machine (e.g. nginx or the Nchan module is not installed)."""


@dataclass(frozen=True)
class Channel:
    """Where to publish to and subscribe to one channel."""

    publish: Endpoint
    subscribe: Endpoint


class Target:
    """A server to benchmark (subclasses start and stop it, and make channels on it)."""

    name: str
    description: str

    def start(self, workdir: Path, pinning: Pinning) -> None:
        """Start the server's processes (nothing for a remote deployment)."""

    def stop(self) -> None:
        """Stop what :meth:`start` started; safe to call twice or after a failed start."""

    def pids(self) -> list[int]:
        """The processes whose memory counts as the server's (empty: not measurable)."""
        return []

    def broker_cpu_seconds(self) -> float | None:
        """CPU time the message broker (Redis) used so far, also reported on its own; None without one."""
        return None

    async def new_channel(self) -> Channel:
        """A fresh channel on this target."""
        raise NotImplementedError


class WebchannelTarget(Target):
    """``python manage.py serve`` (Daphne), optionally with a private Redis on the server's core.

    Its configuration is the default but for ``server.access_log = false`` (Nchan runs with
    ``access_log off`` too): a log line per request would measure the log, not the relay.
    """

    def __init__(self, *, redis: bool, workers: int = 1) -> None:
        self.redis = redis
        self.workers = workers
        self.name = ("webchannel-redis" if redis else "webchannel") + (f"-w{workers}" if workers > 1 else "")
        self.description = (
            "webchannel (manage.py serve, Daphne), Redis channel layer (redis-server on the server's core)"
            if redis
            else "webchannel (manage.py serve, Daphne), in-process channel layer"
        ) + (f", {workers} worker processes (serve --workers {workers})" if workers > 1 else "")
        self.server: ServerProcess | None = None
        self.redis_server: RedisServer | None = None
        self.base_url = ""

    def start(self, workdir: Path, pinning: Pinning) -> None:
        sections: dict[str, dict[str, object]] = {"server": {"access_log": False}}
        if self.redis:
            self.redis_server = RedisServer(workdir)
            self.redis_server.start()
            assert self.redis_server.proc is not None
            pin_process(self.redis_server.proc.pid, pinning.server)
            sections["redis"] = {"url": self.redis_server.url}
        config_path = workdir / f"{self.name}.toml"
        config_path.write_text(toml(base_config(**sections)))
        log_path = workdir / f"{self.name}.log"
        command = pinning.server_command(
            [sys.executable, "manage.py", "serve", "-c", str(config_path), "--workers", str(self.workers)]
        )
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=clean_env(WC_LOG="info")
            )
        self.server = ServerProcess(proc, log_path)
        self.server.wait_listening()
        self.base_url = self.server.url

    def stop(self) -> None:
        try:
            if self.server is not None:
                self.server.stop()
        finally:
            self.server = None
            if self.redis_server is not None:
                self.redis_server.stop()
                self.redis_server = None

    def pids(self) -> list[int]:
        pids = process_tree(self.server.pid) if self.server else []
        if self.redis_server is not None and self.redis_server.proc is not None:
            pids.append(self.redis_server.proc.pid)
        return pids

    def broker_cpu_seconds(self) -> float | None:
        return redis_cpu_seconds(self.redis_server.port) if self.redis_server is not None else None

    async def new_channel(self) -> Channel:
        return await webchannel_channel(self.base_url, API_KEY)


class RemoteTarget(Target):
    """A webchannel deployment the user runs (``--url``, ``--api-key``): nothing started, no memory."""

    def __init__(self, url: str, api_key: str) -> None:
        self.base_url = url.rstrip("/")
        self.api_key = api_key
        self.name = "url"
        self.description = f"webchannel at {self.base_url} (not started by the benchmark)"

    async def new_channel(self) -> Channel:
        return await webchannel_channel(self.base_url, self.api_key)


def redis_cpu_seconds(port: int) -> float:
    """``used_cpu_sys + used_cpu_user`` from Redis's ``INFO cpu``: all its threads, to the microsecond
    (``/proc`` counts in 10 ms ticks, too coarse for a broker busy a few percent of a second)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"INFO cpu\r\n")
        text = _bulk_reply(sock).decode()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"])


def _bulk_reply(sock: socket.socket) -> bytes:
    """One RESP bulk string (``$<length>\\r\\n<bytes>\\r\\n``) read from ``sock``."""
    data = b""
    while True:
        head, separator, rest = data.partition(b"\r\n")
        if separator and len(rest) >= int(head[1:]) + 2:
            return rest[: int(head[1:])]
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        data += chunk


async def webchannel_channel(base_url: str, api_key: str) -> Channel:
    """Create a channel with the API key; publish with its token, subscribe with ``?access_token=``."""
    status, body = await post(f"{base_url}{CHANNELS}", b"", {"x-api-key": api_key, "content-type": "application/json"})
    if status != 200:
        raise RuntimeError(f"creating a channel at {base_url} answered {status}: {body[:200]!r}")
    document = json.loads(body)
    channel_id, token = document["channelId"], document["token"]
    url = f"{base_url}{CHANNELS}/{quote(channel_id, safe='')}"
    ws_url = url.replace("http", "ws", 1) + f"?access_token={quote(token, safe='')}"
    return Channel(
        publish=Endpoint.from_url(url, {"Authorization": f"Bearer {token}"}),
        subscribe=Endpoint.from_url(ws_url),
    )


def pub_sub_channel(port: int) -> Channel:
    """A fresh channel id on a server with ``POST /pub/<id>`` and WebSocket ``/sub/<id>`` (Nchan, relay)."""
    channel_id = secrets.token_hex(8)
    return Channel(
        publish=Endpoint.from_url(f"http://127.0.0.1:{port}/pub/{channel_id}"),
        subscribe=Endpoint.from_url(f"ws://127.0.0.1:{port}/sub/{channel_id}"),
    )


def nchan_module() -> Path | None:
    """The Nchan module's file, from ``BENCH_NCHAN_MODULE`` or Debian's locations."""
    override = os.environ.get("BENCH_NCHAN_MODULE")
    candidates = [Path(override)] if override else NCHAN_MODULE_PATHS
    return next((path for path in candidates if path.is_file()), None)


class NchanTarget(Target):
    """nginx with the Nchan module, configured from ``bench/nchan.conf``, one worker per server core."""

    name = "nchan"

    def __init__(self) -> None:
        self.description = "Nchan (nginx module), nchan_store_messages off"
        self.process: LocalProcess | None = None
        self.prefix: Path | None = None
        self.port = 0

    def start(self, workdir: Path, pinning: Pinning) -> None:
        nginx, module = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin"), nchan_module()
        if nginx is None or module is None:
            raise TargetUnavailable(
                "nginx with the Nchan module is not installed (Debian: apt-get install nginx-light libnginx-mod-nchan)"
            )
        self.prefix = workdir / "nchan"
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        workers = pinning.server_cores
        open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        open_files = 65536 if open_files == resource.RLIM_INFINITY else open_files
        self.description = f"Nchan (nginx module), nchan_store_messages off, {workers} worker(s)"
        config = (BENCH / "nchan.conf").read_text()
        for name, value in {
            "NCHAN_MODULE": str(module),
            "WORKERS": str(workers),
            "PREFIX": str(self.prefix),
            "PORT": str(self.port),
            "NOFILE": str(open_files),
            "CONNECTIONS": str(max(1024, open_files - 100)),
        }.items():
            config = config.replace(f"@@{name}@@", value)
        config_path = self.prefix / "nginx.conf"
        config_path.write_text(config)
        command = [nginx, "-p", str(self.prefix), "-c", str(config_path), "-e", str(self.prefix / "error.log")]
        self.process = LocalProcess.start(
            [*pinning.server_command(command), "-g", "daemon off;"], self.prefix / "stderr.log", self.port
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def pids(self) -> list[int]:
        """Master and workers: the master's pid file names the same process we started."""
        if self.process is None or self.prefix is None:
            return []
        pid_file = self.prefix / "nginx.pid"
        master = int(pid_file.read_text()) if pid_file.is_file() else self.process.proc.pid
        return process_tree(master)

    async def new_channel(self) -> Channel:
        return pub_sub_channel(self.port)


class RelayTarget(Target):
    """``bench/relay.py``, a do-nothing Python relay: the load generator's ceiling on this machine."""

    name = "relay"
    description = "null relay (bench/relay.py, Python asyncio): the load generator's ceiling"

    def __init__(self) -> None:
        self.process: LocalProcess | None = None
        self.port = 0

    def start(self, workdir: Path, pinning: Pinning) -> None:
        self.port = free_port()
        command = pinning.server_command([sys.executable, "-m", "bench.relay", str(self.port)])
        self.process = LocalProcess.start(command, workdir / "relay.log", self.port, cwd=REPO)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def pids(self) -> list[int]:
        return process_tree(self.process.proc.pid) if self.process else []

    async def new_channel(self) -> Channel:
        return pub_sub_channel(self.port)


@dataclass
class LocalProcess:
    """A server process we started (output in a file, not a pipe), stopped by its PID."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, command: list[str], log_path: Path, port: int, cwd: Path | None = None) -> LocalProcess:
        """Start ``command`` and wait (bounded) until it accepts connections on ``port``."""
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        process = cls(proc, log_path)
        deadline = time.monotonic() + START_SECONDS
        while not _accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                process.stop()
                output = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{command[0]} did not start listening on port {port}: {output}")
            time.sleep(0.02)
        return process

    def stop(self) -> None:
        """SIGTERM (nginx's master stops its workers), then SIGKILL the whole tree if it hangs."""
        proc = self.proc
        if proc.poll() is not None:
            return
        tree = process_tree(proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait(timeout=STOP_SECONDS)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def make_targets(names: list[str], url: str | None, api_key: str | None) -> list[Target]:
    """Targets by name: webchannel, webchannel-redis, webchannel-redis-w2 (``serve --workers 2``), nchan,
    relay, url (the ``--url`` deployment)."""
    targets: list[Target] = []
    for name in names:
        if name == "webchannel":
            targets.append(WebchannelTarget(redis=False))
        elif name == "webchannel-redis":
            targets.append(WebchannelTarget(redis=True))
        elif name == "webchannel-redis-w2":
            targets.append(WebchannelTarget(redis=True, workers=2))
        elif name == "nchan":
            targets.append(NchanTarget())
        elif name == "relay":
            targets.append(RelayTarget())
        elif name == "url":
            if not url or not api_key:
                raise ValueError("the url target needs --url and --api-key")
            targets.append(RemoteTarget(url, api_key))
        else:
            raise ValueError(f"unknown target {name!r}")
    return targets
