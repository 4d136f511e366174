"""Publish rates of named API keys (``max_publish_rate``), counted across all processes.

Time is cut into fixed windows on the wall clock, the same in every process (clocks kept in step
by NTP): one second long for a rate of at least one message a second, allowing ``floor(rate)``
messages in each; for a lower rate, ``ceil(1 / rate)`` seconds allowing one (0.5: one every 2 s).
A rate is never exceeded by one process, and a refused publish is told when the window ends.

Each process counts what it admits in memory, so a publish asks Redis nothing. With Redis, a
background task, running only while rated keys publish in this process, adds the process's new
counts to one Redis counter per key and window every :data:`REPORT_SECONDS` (``INCRBY`` and
``PEXPIRE`` in one pipeline on the first Redis server, keys named
``<redis.prefix>__rate__<key name>__<window start>``) and learns the total from the answer. A
publish is admitted while this process's count plus the others' last known count is below the
allowance. What the others admitted since their last report is not known yet, so across P
processes a window admits:

- at most P times the allowance (each process never passes it on its own), reached only when the
  processes all begin a burst in the same window before any of them has heard of the others';
- with publishes spread over the window, about the allowance plus what the other processes
  admit in one report interval and a round trip (about a tenth of a second's worth).

As with any fixed window, a sliding second that straddles two windows may hold up to twice the
allowance, also in one process. Without Redis the count is this process's own, exact.

A publish counts against the key that authenticated it: the API key, or for a channel token the
key named by its ``key`` claim (the named key that minted it), so a key cannot escape its rate
through the tokens it hands out; its own publishes and its tokens' share one count. A token
without that claim counts against nothing. A publish is counted when it is admitted, before a
``?wait=`` and before the channel layer takes it (a 503 still counts).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .exceptions import RateLimited
from .redis_hosts import RedisTarget

__all__ = ["REPORT_SECONDS", "PublishRates", "RedisTarget", "allowance"]

logger = logging.getLogger(__name__)

REPORT_SECONDS = 0.1
"""How often a process adds its new counts to Redis and learns the others' (while publishing)."""
REDIS_TIMEOUT_SECONDS = 2.0
"""A report Redis has not answered by then fails; the next one carries its counts."""


def allowance(rate: float) -> tuple[int, int]:
    """The window (whole seconds) and the messages it allows for ``rate`` messages per second:
    never more than the rate, and at least one message per window."""
    span = 1 if rate >= 1 else math.ceil(1 / rate)
    return span, max(1, math.floor(rate * span))


@dataclass
class _Window:
    """One key's current window, as this process knows it."""

    start: int
    """Seconds since the epoch, a multiple of the window's length."""
    span: int
    mine: int = 0
    """Admitted by this process."""
    reported: int = 0
    """Of ``mine``, already added to the Redis counter (or on the way)."""
    others: int = 0
    """Admitted by the other processes, as last read from Redis."""


class PublishRates:
    """What each rated key has published in the current window, here and (with Redis) elsewhere.

    ``limits``: key name to messages per second, None for those the settings configure
    (``[[channel.keys]]`` with ``max_publish_rate``); ``redis``: the host entry and prefix the
    counts are shared under, None for this process only, or what the settings configure.
    """

    def __init__(
        self,
        limits: Mapping[str, float],
        redis: RedisTarget | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._allowances = {name: allowance(rate) for name, rate in limits.items()}
        self.redis = redis
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def admit(self, name: str) -> None:
        """Count a publish authenticated by the key called ``name`` (an API key, or the key that
        minted the token); raise :class:`RateLimited` if its rate allows no more in this window.

        For a key without a rate this is one dict lookup.
        """
        found = self._allowances.get(name)
        if found is not None:
            self._count(name, *found)

    def _count(self, name: str, span: int, allowed: int) -> None:
        now = self.clock()
        start = int(now // span) * span
        window = self._windows.get(name)
        if window is None or window.start != start:
            # Counts of a window that is over are of no use to anyone: a new window starts at 0.
            window = self._windows[name] = _Window(start, span)
        if window.mine + window.others >= allowed:
            raise RateLimited(span, allowed, max(1, math.ceil(start + span - now)))
        window.mine += 1
        self._start_reporting()

    # --- sharing the counts through Redis -------------------------------------------------------

    def _start_reporting(self) -> None:
        """Start the report task on the running loop, unless it runs already or there is no Redis."""
        task = self._task
        if task is not None and not task.done() and not task.get_loop().is_closed():
            return
        if self.redis is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(self.redis), name="webchannel publish rates")

    async def _run(self, target: RedisTarget) -> None:
        """Report every :data:`REPORT_SECONDS` while a rated key published here in this window or
        the previous one; then end (and close the connection): a later publish starts it again.

        The loop also ends once this is no longer the object's task, in case redis-py swallowed
        the cancellation of :meth:`stop`.
        """
        from .redis_pool import bounded_client

        this = asyncio.current_task()
        client = bounded_client(target[0], socket_timeout=REDIS_TIMEOUT_SECONDS)
        try:
            while self._task is this and self._publishing():
                try:
                    async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                        await self.report(client, target[1])
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failed(exc)
                await asyncio.sleep(REPORT_SECONDS)
        finally:
            if self._task is this:
                self._task = None
            with contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)

    def _publishing(self) -> bool:
        """Whether a rated key published here in its current or previous window; forgets the others."""
        now = self.clock()
        for name, window in list(self._windows.items()):
            if now >= window.start + 2 * window.span:
                del self._windows[name]
        return bool(self._windows)

    async def report(self, client: Any, prefix: str) -> None:
        """Add this process's unreported counts of the current windows to Redis, and read the
        totals back: one round trip for every key."""
        now = self.clock()
        sent: list[tuple[_Window, int, int]] = []  # window, count added, reported after adding
        pipe = client.pipeline(transaction=False)
        for name, window in self._windows.items():
            if now >= window.start + window.span:
                continue  # over: nobody reads its counter any more
            key = f"{prefix}__rate__{name}__{window.start}"
            added = window.mine - window.reported
            if added:
                pipe.incrby(key, added)
                pipe.pexpire(key, (window.span + 2) * 1000)  # gone soon after its window
            else:
                pipe.get(key)
            window.reported += added
            sent.append((window, added, window.reported))
        if not sent:
            return
        try:
            answers = iter(await pipe.execute())
        except BaseException:
            for window, added, _ in sent:
                window.reported -= added  # the next report carries them
            raise
        for window, added, reported in sent:
            total = int(next(answers) or 0)
            if added:
                next(answers)  # PEXPIRE's
            window.others = max(0, total - reported)  # of a window since replaced: harmless
        if self._failing:
            self._failing = False
            logger.info("publish rates are shared through Redis again")

    async def stop(self) -> None:
        """Stop reporting (for tests)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _failed(self, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            logger.warning(
                "publish rates could not be shared through Redis (%s); each process counts its own "
                "publishes against the others' last known count",
                type(exc).__name__,
            )
