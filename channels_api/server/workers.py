"""``serve --workers N``: N Daphne processes accepting on one port, channels through Redis.

The parent binds N listening sockets to the port with ``SO_REUSEPORT`` and starts N
copies of ``manage.py serve --listen-fd FD``, each inheriting one (Daphne's ``--fd``
way). With a single shared socket, Twisted's greedy accept loop let one worker take
almost every connection; with one socket each, the kernel spreads them evenly. The
parent keeps the sockets, forwards SIGTERM/SIGINT to the workers (each drains its own
subscribers) and restarts a worker that dies on its own, on the same socket, so no
connection is refused meanwhile. ``redis.url`` is required.

Relies on no private attribute or method of another package (``INTERNALS`` is empty): the
workers adopt their socket through Twisted's public ``fd:`` endpoint, and each one runs
the startup check of :mod:`.compat` itself, as ``manage.py serve``.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from .. import metrics

INTERNALS: tuple[tuple[str, ...], ...] = ()

logger = logging.getLogger(__name__)

RESTARTS_PER_MINUTE = 5
"""More crashes than this in a minute means something is wrong beyond one worker: stop."""
POLL_SECONDS = 0.2


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` bound, listening, inheritable TCP (IPv4) sockets on one port (the first picks it if 0)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.listen(1024)
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def endpoint_for_fd(fd: int) -> str:
    """The Twisted endpoint description of an inherited listening socket (Daphne's ``--fd``).

    Twisted's ``fd:`` endpoint adopts IPv4 sockets only: its ``domain`` option is passed on
    as text, which socket adoption does not accept; hence IPv4 for ``--workers``.
    """
    return f"fd:fileno={fd}"


class Supervisor:
    """Starts, watches and stops the worker processes."""

    def __init__(self, sockets: list[socket.socket], drain_seconds: float) -> None:
        self.sockets = sockets
        self.drain_seconds = drain_seconds
        self.children: list[subprocess.Popen[bytes]] = []
        self.stopping = False
        self.crashes: deque[float] = deque()

    def _spawn(self, sock: socket.socket) -> subprocess.Popen[bytes]:
        manage = Path(sys.argv[0]).resolve()
        command = [sys.executable, str(manage), "serve", "--listen-fd", str(sock.fileno())]
        return subprocess.Popen(command, pass_fds=(sock.fileno(),))  # noqa: S603 (our own command)

    def run(self) -> int:
        """Run until a stop signal (exit status 0) or repeated crashes (1)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        self.children = [self._spawn(sock) for sock in self.sockets]
        logger.info("started %d workers: %s", len(self.children), ", ".join(str(c.pid) for c in self.children))
        while not self.stopping:
            time.sleep(POLL_SECONDS)
            if not self._replace_dead():
                self._stop_children()
                return 1
        return self._stop_children()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _replace_dead(self) -> bool:
        for i, child in enumerate(self.children):
            if child.poll() is None or self.stopping:
                continue
            metrics.worker_exited(child.pid)
            now = time.monotonic()
            self.crashes.append(now)
            while self.crashes and self.crashes[0] < now - 60:
                self.crashes.popleft()
            if len(self.crashes) > RESTARTS_PER_MINUTE:
                logger.error("workers keep exiting (%d in a minute): stopping", len(self.crashes))
                return False
            logger.error("worker %d exited with status %s; starting another", child.pid, child.returncode)
            self.children[i] = self._spawn(self.sockets[i])
        return True

    def _stop_children(self) -> int:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.drain_seconds + 5
        for child in self.children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("worker %d did not stop in time: killing it", child.pid)
                child.kill()
                child.wait()
        for sock in self.sockets:
            sock.close()
        return 0 if all(child.returncode == 0 for child in self.children) else 1
