"""A look at a test's private Redis from the side: how many clients it has, how many commands it ran.

:class:`RedisWatch` samples ``INFO clients`` in a thread while a test drives webchannel, so a
burst of connections between two of the test's own reads is still seen, and counts the commands
webchannel sent (``INFO stats``, less the watch's own ``INFO`` commands).
"""

from __future__ import annotations

import threading

import redis

from tests.harness import RedisServer, timeout


class RedisWatch:
    """Samples Redis's ``connected_clients`` every ``interval`` seconds between :meth:`start` and
    :meth:`stop`; the watch's own connection is not counted."""

    def __init__(self, server: RedisServer, interval: float = 0.02) -> None:
        self.client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=timeout(5))
        self.interval = interval
        self.samples: list[int] = []
        self._own_commands = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def clients(self) -> int:
        """Clients connected now, besides this watch."""
        with self._lock:
            self._own_commands += 1
            return int(self.client.info("clients")["connected_clients"]) - 1

    def commands(self) -> int:
        """Commands Redis has processed so far, less this watch's own."""
        with self._lock:
            self._own_commands += 1
            total = int(self.client.info("stats")["total_commands_processed"])
            return total - self._own_commands

    def start(self) -> RedisWatch:
        self.samples = [self.clients()]
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="redis-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(self.clients())

    def stop(self) -> int:
        """Stop sampling; the largest number of clients seen."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout(5))
        self.samples.append(self.clients())
        return max(self.samples)

    def close(self) -> None:
        self._stop.set()
        self.client.close()
