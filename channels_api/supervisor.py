"""``serve --workers N``: N Daphne processes accepting on one port, channels through Redis.

The parent binds one listening socket per worker to the port with ``SO_REUSEPORT`` and
starts ``manage.py serve --listen-fd FD --heartbeat-fd HB`` for each (Daphne's ``--fd``
way). With a single shared socket, Twisted's greedy accept loop let one worker take
almost every connection; with one socket each, the kernel spreads them evenly.

The parent closes its copy of a socket once the worker has it, so a worker's socket lives
exactly as long as the worker listens: when a worker dies (or drains) the kernel stops
routing new connections to it at once and spreads them over the other workers' sockets.
The replacement gets a freshly bound socket that only starts listening (and so only joins
the kernel's spreading) once the worker is about to accept (:func:`listen_on_fd`), so no
connection waits on a worker still starting. Connections already queued in a dead worker's
accept backlog are reset by the kernel, unless ``net.ipv4.tcp_migrate_req`` is 1 (Linux
5.14+), which hands them to another worker's socket.

Supervision:

- a worker that exits on its own is restarted after a delay that starts at
  :data:`FIRST_DELAY` and doubles up to :data:`MAX_DELAY`, back to the start once a worker
  of that slot has stayed up :data:`STABLE_SECONDS`; the other workers are never touched;
- every worker writes a byte to its heartbeat pipe each second from its event loop
  (:func:`start_heartbeat`); one silent for ``worker_timeout`` seconds (its loop is
  blocked) is killed and replaced;
- a worker whose supervisor is gone (killed with SIGKILL, say) drains and exits: on Linux
  the kernel sends it SIGTERM as the supervisor dies (:func:`die_with_supervisor`), elsewhere
  its next heartbeat finds the pipe broken. The last one out removes the metrics directory
  (:mod:`.metric_files`);
- SIGTERM/SIGINT are forwarded to the workers as SIGTERM: each drains its own subscribers.
  A terminal's Ctrl-C or systemd's ``KillMode=control-group`` also signals every worker
  directly; a worker drains once whichever signal arrives first and ignores the others
  (the drain in :mod:`.daphne_server`). A second signal to the parent stops the workers
  at once (SIGUSR1). Redis (``redis.url`` or ``redis.sentinels``) is required.

Relies on no private attribute or method of another package (``INTERNALS`` is empty): the
workers adopt their socket through Twisted's public ``fd:`` endpoint, and each one runs
the startup check of :mod:`channels_api.fence` itself, as ``manage.py serve``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .metric_files import MetricsDirectory

INTERNALS: tuple[tuple[str, ...], ...] = ()

logger = logging.getLogger(__name__)

FIRST_DELAY = 0.5
"""Seconds before a worker that exited is restarted, the first time."""
MAX_DELAY = 30.0
"""The restart delay doubles on every further exit, up to this."""
STABLE_SECONDS = 30.0
"""A worker that stayed up this long resets its slot's delay: its exit is news, not a loop."""
WORKER_TIMEOUT = 10.0
"""Default seconds without a heartbeat after which a worker is killed and replaced."""
STARTUP_SECONDS = 60.0
"""A new worker may take this long (imports, startup checks) before its first heartbeat."""
HEARTBEAT_SECONDS = 1.0
POLL_SECONDS = 0.2
BACKLOG = 1024
STOP_NOW = signal.SIGUSR1
"""What the parent sends its workers on a second stop signal: stop without draining."""
PR_SET_PDEATHSIG = 1
"""prctl(2): the signal the calling process gets when its parent dies (Linux)."""


def listening_sockets(host: str, port: int, count: int, listen: bool = True) -> list[socket.socket]:
    """``count`` bound, inheritable TCP (IPv4) sockets on one port (the first picks it if 0), listening
    unless ``listen`` is false."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            if listen:
                sock.listen(BACKLOG)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def listen_on_fd(fd: int) -> None:
    """In a worker: make the inherited socket listen (a replacement's is only bound), keeping ``fd`` open."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.listen(BACKLOG)
    finally:
        sock.close()


def endpoint_for_fd(fd: int) -> str:
    """The Twisted endpoint description of an inherited listening socket (Daphne's ``--fd``).

    Twisted's ``fd:`` endpoint adopts IPv4 sockets only: its ``domain`` option is passed on
    as text, which socket adoption does not accept; hence IPv4 for ``--workers``.
    """
    return f"fd:fileno={fd}"


def die_with_supervisor(supervisor: int) -> bool:
    """In a worker, first thing: have the kernel send SIGTERM (a drain) when the supervisor dies.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere the heartbeat finds out, within a second.
    The signal comes when the thread that started the worker ends: the supervisor's only one.
    Returns False if the supervisor is already gone (it died before the request was made, and
    the worker was handed to another parent): the worker should exit at once.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGTERM), 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    return os.getppid() == supervisor


def start_heartbeat(fd: int, interval: float = HEARTBEAT_SECONDS) -> None:
    """In a worker: write a byte to the supervisor's pipe every ``interval`` from the event loop.

    A blocked loop stops the beats, which is what the supervisor watches for. If the
    supervisor is gone (the pipe is broken), the worker drains and exits rather than
    holding the port on its own.
    """
    from twisted.internet import reactor as _reactor

    reactor: Any = _reactor
    os.set_blocking(fd, False)

    def beat() -> None:
        try:
            os.write(fd, b".")
        except BlockingIOError:
            pass  # the supervisor is behind on reading; it has beats enough
        except OSError:
            logger.error("the supervisor is gone: draining")
            os.kill(os.getpid(), signal.SIGTERM)
            return
        reactor.callLater(interval, beat)

    reactor.callWhenRunning(beat)


@dataclass
class Slot:
    """One worker position: its process, its heartbeat pipe and its restart schedule."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    heartbeat: int | None = None
    started: float = 0.0
    last_beat: float | None = None
    failures: int = 0
    restart_at: float | None = None


class Supervisor:
    """Starts, watches, restarts and stops the worker processes."""

    def __init__(
        self,
        sockets: list[socket.socket],
        drain_seconds: float,
        worker_timeout: float = WORKER_TIMEOUT,
        metrics_directory: MetricsDirectory | None = None,
    ) -> None:
        self.host, self.port = sockets[0].getsockname()[:2]
        self.sockets = sockets
        self.drain_seconds = drain_seconds
        self.worker_timeout = worker_timeout
        self.metrics_directory = metrics_directory
        self.slots = [Slot(i) for i in range(len(sockets))]
        self.stopping = False
        self.signals = 0

    def _spawn(self, sock: socket.socket) -> tuple[subprocess.Popen[bytes], int]:
        """A worker on ``sock``, and the read end of its heartbeat pipe."""
        read_end, write_end = os.pipe()
        manage = Path(sys.argv[0]).resolve()
        command = [
            sys.executable,
            str(manage),
            "serve",
            "--listen-fd",
            str(sock.fileno()),
            "--heartbeat-fd",
            str(write_end),
            "--supervisor-pid",
            str(os.getpid()),
        ]
        try:
            process = subprocess.Popen(command, pass_fds=(sock.fileno(), write_end))  # noqa: S603 (our own command)
        except OSError:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        return process, read_end

    def _start(self, slot: Slot, sock: socket.socket | None = None) -> None:
        """Start ``slot``'s worker on ``sock`` or on a freshly bound socket; retry later if that fails."""
        try:
            sock = sock or listening_sockets(self.host, self.port, 1, listen=False)[0]
        except OSError as exc:
            self._schedule_restart(slot, f"cannot listen on {self.host}:{self.port}: {exc.strerror}")
            return
        try:
            slot.process, slot.heartbeat = self._spawn(sock)
        except OSError as exc:
            self._schedule_restart(slot, f"cannot start a worker: {exc}")
            return
        finally:
            sock.close()  # the worker has its own copy: the socket now lives as long as the worker
        slot.started = time.monotonic()
        slot.last_beat = None
        slot.restart_at = None
        logger.info("worker %d started (slot %d)", slot.process.pid, slot.index)

    def run(self) -> int:
        """Run until a stop signal; exit status 0 if every worker then stopped cleanly."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        for slot, sock in zip(self.slots, self.sockets, strict=True):
            self._start(slot, sock)
        self.sockets = []
        logger.info(
            "started %d workers: %s",
            len(self.slots),
            ", ".join(str(s.process.pid) for s in self.slots if s.process is not None),
        )
        while not self.stopping:
            self._read_heartbeats(POLL_SECONDS)
            now = time.monotonic()
            for slot in self.slots:
                if self.stopping:
                    break
                self._check(slot, now)
        return self._stop_children()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals += 1
        if self.signals == 1:
            self.stopping = True
            logger.info(
                "%s: stopping the workers (drain window %.1fs)", signal.Signals(signum).name, self.drain_seconds
            )
            self._signal_children(signal.SIGTERM)
        else:
            logger.warning("second %s: stopping the workers now", signal.Signals(signum).name)
            self._signal_children(STOP_NOW)

    def _signal_children(self, signum: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signum)

    def _read_heartbeats(self, wait: float) -> None:
        """Wait up to ``wait`` seconds for heartbeats and take them in."""
        pipes = {slot.heartbeat: slot for slot in self.slots if slot.heartbeat is not None}
        try:
            ready, _, _ = select.select(list(pipes), [], [], wait)
        except InterruptedError:  # pragma: no cover - Python retries select after a signal handler
            return
        now = time.monotonic()
        for fd in ready:
            slot = pipes[fd]
            if os.read(fd, 4096):
                slot.last_beat = now
            else:  # the worker closed the pipe: it is exiting
                os.close(fd)
                slot.heartbeat = None

    def _check(self, slot: Slot, now: float) -> None:
        """Restart ``slot`` if it is due; notice its worker's exit or silence."""
        if slot.process is None:
            if slot.restart_at is not None and now >= slot.restart_at:
                self._start(slot)
            return
        status = slot.process.poll()
        if status is not None:
            self._on_exit(slot, status, now)
            return
        last = slot.last_beat
        silent_for = now - (last if last is not None else slot.started)
        limit = self.worker_timeout if last is not None else max(self.worker_timeout, STARTUP_SECONDS)
        if silent_for > limit:
            logger.error(
                "worker %d (slot %d) did not answer for %.1fs: killing it", slot.process.pid, slot.index, silent_for
            )
            slot.process.kill()
            self._on_exit(slot, slot.process.wait(), now)

    def _on_exit(self, slot: Slot, status: int, now: float) -> None:
        assert slot.process is not None
        pid, uptime = slot.process.pid, now - slot.started
        slot.process = None
        if self.metrics_directory is not None:
            try:
                self.metrics_directory.archive(pid)
            except Exception:  # its values stay where they are: scrapes still count them
                logger.exception("could not archive the metric files of worker %d", pid)
        if slot.heartbeat is not None:
            os.close(slot.heartbeat)
            slot.heartbeat = None
        if uptime >= STABLE_SECONDS:
            slot.failures = 0
        self._schedule_restart(slot, f"worker {pid} exited with status {status} after {uptime:.1f}s")

    def _schedule_restart(self, slot: Slot, why: str) -> None:
        delay = min(MAX_DELAY, FIRST_DELAY * 2**slot.failures)
        slot.failures += 1
        slot.restart_at = time.monotonic() + delay
        logger.error("%s (slot %d); restarting in %.1fs", why, slot.index, delay)

    def _stop_children(self) -> int:
        """Wait for the workers to finish draining.

        The signal handler told them; telling them again reaches one started meanwhile, and a
        worker drains once however many times it is told. One stopped by that signal before it
        could handle it (still starting, so with nothing to drain) counts as a clean stop.
        """
        if self.signals < 2:
            self._signal_children(signal.SIGTERM)
        deadline = time.monotonic() + self.drain_seconds + 5
        clean = True
        for slot in self.slots:
            process = slot.process
            if process is None:
                continue
            try:
                while process.poll() is None and time.monotonic() < deadline:
                    self._read_heartbeats(POLL_SECONDS)  # keeps the pipes drained, waits
                if process.poll() is None:
                    raise subprocess.TimeoutExpired(process.args, self.drain_seconds + 5)
            except subprocess.TimeoutExpired:
                logger.error("worker %d did not stop in time: killing it", process.pid)
                process.kill()
                process.wait()
            clean = clean and process.returncode in (0, -signal.SIGTERM)
        for slot in self.slots:
            if slot.heartbeat is not None:
                os.close(slot.heartbeat)
                slot.heartbeat = None
        return 0 if clean else 1
