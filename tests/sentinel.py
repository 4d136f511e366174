"""A Redis Sentinel deployment for failover tests: one master, one replica of it and one
sentinel (quorum 1, the master counts as down after 500 ms without an answer, failover timeout
2 s), each a real process on a free loopback port, stopped by PID.

Built from :mod:`tests.redis_servers` (:class:`~tests.redis_servers.ConfiguredRedis`,
:class:`~tests.redis_servers.RedisSentinel`). :meth:`SentinelDeployment.start` returns once the
replica is in sync and the sentinel knows it, so a failover can promote it; the clients here
only look at the servers, they never drive webchannel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.harness import timeout, wait_for
from tests.redis_servers import LOOPBACK, ConfiguredRedis, RedisSentinel

MASTER_NAME = "webchannel-test"
DOWN_AFTER_MS = 500
"""The sentinel's ``down-after-milliseconds``; its failover timeout is 2 s (see RedisSentinel)."""


@dataclass
class ReplicaRedis(ConfiguredRedis):
    """A ``redis-server`` that starts as a replica of the server on ``master_port``."""

    master_port: int = 0

    def command(self) -> list[str]:
        return [*super().command(), "--replicaof", LOOPBACK, str(self.master_port)]

    def in_sync(self) -> bool:
        """Its link to the master is up (the initial synchronisation is done)."""
        with self.client() as client:
            return client.info("replication").get("master_link_status") == "up"

    def role(self) -> str:
        with self.client() as client:
            return str(client.info("replication").get("role"))


@dataclass
class SentinelDeployment:
    """One master, one replica and one sentinel; :meth:`kill_master` starts a failover."""

    workdir: Path
    master: ConfiguredRedis = field(init=False)
    replica: ReplicaRedis = field(init=False)
    sentinel: RedisSentinel = field(init=False)

    @property
    def sentinel_address(self) -> str:
        return self.sentinel.address

    def start(self) -> None:
        for name in ("master", "replica", "sentinel"):
            (self.workdir / name).mkdir(parents=True, exist_ok=True)
        self.master = ConfiguredRedis(self.workdir / "master")
        self.master.start()
        self.replica = ReplicaRedis(self.workdir / "replica", master_port=self.master.port)
        self.replica.start()
        wait_for(self.replica.in_sync, 10, "the replica to synchronise with the master")
        self.sentinel = RedisSentinel(
            self.workdir / "sentinel", self.master, master_name=MASTER_NAME, down_after_ms=DOWN_AFTER_MS
        )
        self.sentinel.start()
        wait_for(self._sentinel_knows_the_replica, 15, "the sentinel to know an in-sync replica")

    def _sentinel_knows_the_replica(self) -> bool:
        for replica in self._sentinel_replicas():
            if (
                int(replica.get("port", 0)) == self.replica.port
                and replica.get("flags") == "slave"
                and replica.get("master-link-status") == "ok"
            ):
                return True
        return False

    def _sentinel_replicas(self) -> list[dict[str, str]]:
        """``SENTINEL REPLICAS`` as a list of field -> value maps."""
        with redis.Redis(host=LOOPBACK, port=self.sentinel.port, socket_timeout=timeout(2)) as client:
            rows = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
        return [_fields(row) for row in rows or []]

    def master_port(self) -> int | None:
        """The port of the master the sentinel names now (None while it names none)."""
        address = self.sentinel.master_address()
        return address[1] if address else None

    def kill_master(self) -> float:
        """SIGKILL the master by PID; return when (monotonic) it was killed."""
        self.master.stop()
        return time.monotonic()

    def promoted(self) -> bool:
        """The sentinel names the replica as master, and the replica knows it is one."""
        return self.master_port() == self.replica.port and self.replica.role() == "master"

    @contextmanager
    def switch_watch(self) -> Iterator[SwitchWatch]:
        """Note when the sentinel announces ``+switch-master`` (it moves clients to the new master)."""
        watch = SwitchWatch(self.sentinel.port)
        try:
            yield watch
        finally:
            watch.close()

    def stop(self) -> None:
        for node in (getattr(self, "sentinel", None), getattr(self, "replica", None), getattr(self, "master", None)):
            if node is not None:
                node.stop()


class SwitchWatch:
    """A thread subscribed to the sentinel's ``+switch-master`` events: :attr:`seen` is the
    monotonic time the first one arrived (None before)."""

    def __init__(self, port: int) -> None:
        self.seen: float | None = None
        self._stop = threading.Event()
        self._client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=timeout(5))
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe("+switch-master")
        self._thread = threading.Thread(target=self._run, name="switch-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.seen is None:
            if self._pubsub.get_message(timeout=0.01) is not None:
                self.seen = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout(5))
        self._pubsub.close()
        self._client.close()


@contextmanager
def sentinel_deployment(workdir: Path) -> Iterator[SentinelDeployment]:
    """A started :class:`SentinelDeployment`, every process killed when the block ends."""
    deployment = SentinelDeployment(workdir)
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def _fields(row: object) -> dict[str, str]:
    """One ``SENTINEL REPLICAS`` row (redis-py may have made it a dict already) as text."""
    if isinstance(row, dict):
        return {_text(k): _text(v) for k, v in row.items()}
    items = list(row)  # type: ignore[call-overload]
    return {_text(items[i]): _text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
