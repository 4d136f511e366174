"""Redis connection pools that are capped and close the connections they no longer need.

redis-py's default pool opens a connection for each command running at the same moment and
keeps every one of them open for good (up to 100, past which commands fail): a burst of
concurrent requests that each ask Redis something leaves that many connections behind. Every
pool webchannel makes (the channel layer's, one per Redis server and event loop; presence's;
the publish rates') is made by :func:`bounded_pool`:

- it holds at most :data:`MAX_CONNECTIONS` connections; a command that finds them all busy waits
  its turn, up to :data:`WAIT_SECONDS`, and only then fails (redis-py's ``BlockingConnectionPool``);
- of the connections given back, the :data:`KEEP_IDLE` most recently used stay open; any other
  one unused for :data:`IDLE_SECONDS` is closed (used again, it reconnects).

Only redis-py's public pool API is extended: ``get_available_connection`` (the pool hands a
connection out) and ``release`` (it is given back), and a connection's ``is_connected`` and
``disconnect``. Importing this module imports redis-py: import it only with Redis configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)

__all__ = [
    "IDLE_SECONDS",
    "KEEP_IDLE",
    "MAX_CONNECTIONS",
    "WAIT_SECONDS",
    "BoundedPool",
    "BoundedSentinelPool",
    "bounded_client",
    "bounded_pool",
]

MAX_CONNECTIONS = 4
"""Connections one pool holds at most. The channel layer's needs two (its pub/sub connection and
one for publishing: channels_redis publishes one message at a time per server), presence's one
for its refresh and one for the polls of waiting publishes, the rates' one."""
WAIT_SECONDS = 2.0
"""A command waits this long at most for one of the pool's connections to be free, then fails."""
KEEP_IDLE = 2
"""Idle connections a pool keeps open: the most recently used ones, which it hands out first."""
IDLE_SECONDS = 5.0
"""Other idle connections are closed once unused for this long (and at most twice as long)."""


class _IdleClosing(ConnectionPool):
    """A pool that closes connections idle for :data:`IDLE_SECONDS`, beyond the :data:`KEEP_IDLE`
    most recently given back.

    It sits after ``BlockingConnectionPool`` in a pool class's bases, so that class's calls to
    ``super().get_available_connection()`` and ``super().release()`` come through it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._idle: dict[AbstractConnection, float] = {}  # connection: when it was given back
        self._closer: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None

    def get_available_connection(self) -> Any:
        connection = super().get_available_connection()
        self._idle.pop(connection, None)  # handed out (under the pool's lock): in use from now on
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        # Marked before it is back among the available ones, not after: once back, another task
        # could take it before this one resumes, and it would be marked idle while in use.
        self._idle[connection] = time.monotonic()
        await super().release(connection)
        self._schedule(IDLE_SECONDS)

    def _schedule(self, delay: float) -> None:
        if self._closer is None and len(self._idle) > KEEP_IDLE:
            self._closer = asyncio.get_running_loop().call_later(delay, self._start_closing)

    def _start_closing(self) -> None:
        self._closer = None
        if self._closing is None or self._closing.done():
            self._closing = asyncio.get_running_loop().create_task(self.close_idle(), name="redis idle connections")

    async def close_idle(self) -> None:
        """Close the connections idle for :data:`IDLE_SECONDS` beyond the :data:`KEEP_IDLE` most
        recently given back; check again when the next one will have been idle that long."""
        newest_first = sorted(self._idle, key=self._idle.__getitem__, reverse=True)
        for connection in newest_first[KEEP_IDLE:]:
            since = self._idle.get(connection)
            if since is None or time.monotonic() - since < IDLE_SECONDS:
                continue  # handed out again meanwhile, or not idle long enough yet
            del self._idle[connection]
            # disconnect() drops the socket before it first awaits, and nothing is awaited since
            # the check above: no task can take this connection in between and lose its command.
            with contextlib.suppress(Exception):
                await connection.disconnect()
        waiting = sorted(self._idle.values(), reverse=True)[KEEP_IDLE:]
        if waiting:
            self._schedule(max(0.0, min(waiting) + IDLE_SECONDS - time.monotonic()))


class BoundedPool(BlockingConnectionPool, _IdleClosing):
    """At most ``max_connections`` connections, callers waiting their turn up to ``timeout``
    seconds; idle ones closed (see the module's docstring)."""


class BoundedSentinelPool(BlockingConnectionPool, _IdleClosing, SentinelConnectionPool):
    """:class:`BoundedPool` for the master a Redis Sentinel names."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        # BlockingConnectionPool passes a plain Connection unless told otherwise; a Sentinel pool
        # needs the kind that asks the sentinels for the master's address.
        ssl = kwargs.pop("ssl", False)
        kwargs.setdefault("connection_class", SentinelManagedSSLConnection if ssl else SentinelManagedConnection)
        super().__init__(service_name=service_name, sentinel_manager=sentinel_manager, **kwargs)


def bounded_pool(host: Mapping[str, Any], **options: Any) -> ConnectionPool:
    """A capped pool for a channels_redis host entry (``{"address": URL, ...}``, a Sentinel entry,
    or connection options), read as ``channels_redis.utils.create_pool`` reads it; ``options``
    add to the entry's (``max_connections``, ``timeout``, ``socket_timeout``...)."""
    settings = {"max_connections": MAX_CONNECTIONS, "timeout": WAIT_SECONDS, **host, **options}
    if "address" in settings:
        return BoundedPool.from_url(settings.pop("address"), **settings)
    master_name = settings.pop("master_name", None)
    if master_name is not None:
        sentinel = Sentinel(settings.pop("sentinels"), sentinel_kwargs=settings.pop("sentinel_kwargs", None))
        return BoundedSentinelPool(master_name, sentinel, **settings)
    return BoundedPool(**settings)


def bounded_client(host: Mapping[str, Any], **options: Any) -> Redis:
    """A redis-py client on a :func:`bounded_pool`; ``aclose(close_connection_pool=True)`` closes both."""
    return Redis(connection_pool=bounded_pool(host, **options))
