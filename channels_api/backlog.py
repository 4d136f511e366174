"""A subscriber's queue of pending messages, bounded in bytes, that never drops silently."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final


class _Overflowed:
    def __repr__(self) -> str:
        return "OVERFLOWED"


OVERFLOWED: Final = _Overflowed()
"""What :meth:`Backlog.get` returns once, after the backlog passed its bound."""


class Backlog:
    """Messages waiting for one subscriber, at most ``max_bytes`` of them (as ``size_of`` counts).

    A put that would pass the bound discards everything pending and switches the backlog
    to *overflowed*: the next :meth:`get` returns :data:`OVERFLOWED` so the consumer can
    close the socket with a documented code, and later puts are only counted in
    ``dropped``. Memory stays bounded and the subscriber learns it lost messages.
    """

    __slots__ = (
        "_bytes",
        "_drained",
        "_drained_below",
        "_head",
        "_items",
        "_max_bytes",
        "_reported",
        "_size_of",
        "_waiter",
        "closed",
        "dropped",
        "overflowed",
    )  # one per subscriber: no per-instance dict

    def __init__(self, max_bytes: int, size_of: Callable[[Any], int]) -> None:
        self._max_bytes = max_bytes
        self._size_of = size_of
        # A list read from _head: an empty deque costs 600 bytes, and most backlogs are empty.
        self._items: list[Any] = []
        self._head = 0
        self._bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._drained_below = 0
        self._reported = False
        self.closed = False
        self.overflowed = False
        self.dropped = 0

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items) - self._head

    def put_nowait(self, item: Any) -> None:
        """Queue ``item``, or overflow if it does not fit (a lone item always fits)."""
        if self.overflowed:
            self.dropped += 1
            return
        size = self._size_of(item)
        if len(self) and self._bytes + size > self._max_bytes:
            self.overflowed = True
            self.dropped = len(self) + 1
            self._items.clear()
            self._head = 0
            self._bytes = 0
            self._wake_drained()
        else:
            self._items.append(item)
            self._bytes += size
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Any:
        """The oldest item; :data:`OVERFLOWED` once after an overflow, then nothing ever again."""
        while not len(self) and (not self.overflowed or self._reported):
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if len(self):
            item = self._items[self._head]
            self._head += 1
            if self._head == len(self._items):
                self._items.clear()
                self._head = 0
            elif self._head > 1024:  # a long backlog read from the front: drop the read part
                del self._items[: self._head]
                self._head = 0
            self._bytes -= self._size_of(item)
            if self._drained is not None and len(self) <= self._drained_below:
                self._wake_drained()
            return item
        self._reported = True
        return OVERFLOWED

    def take_while(self, wanted: Callable[[Any], bool], limit: int) -> list[Any]:
        """The items pending now, oldest first, as long as ``wanted(item)``, at most ``limit``.

        Lets a consumer woken for one message write those queued behind it at once.
        """
        taken: list[Any] = []
        items = self._items
        while len(taken) < limit and self._head < len(items) and wanted(items[self._head]):
            item = items[self._head]
            self._head += 1
            self._bytes -= self._size_of(item)
            taken.append(item)
        if self._head == len(items):
            items.clear()
            self._head = 0
        if taken and self._drained is not None and len(self) <= self._drained_below:
            self._wake_drained()
        return taken

    async def drained(self, at_most: int) -> None:
        """Wait until at most ``at_most`` items are pending (the consumer caught up), or it is gone."""
        if len(self) <= at_most or self.overflowed or self.closed:
            return
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        self._drained_below = at_most
        await asyncio.shield(self._drained)  # several publishers may wait; a timeout cancels only its own

    def close(self) -> None:
        """The consumer is gone: release whoever waits for it to drain."""
        self.closed = True
        self._wake_drained()

    def _wake_drained(self) -> None:
        if self._drained is not None:
            if not self._drained.done():
                self._drained.set_result(None)
            self._drained = None
