"""What both channel layers share: each subscriber's bounded backlog, and backpressure toward publishers.

Both layers deliver group messages into a :class:`~channels_api.backlog.Backlog` per
consumer. When a subscriber falls more than ``max_backlog_bytes`` behind, its backlog
overflows and the subscriber is closed with 4008. Delivery stays at most once: nothing is
stored beyond those backlogs (and the channel's history, when one is kept).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from ..backlog import OVERFLOWED, Backlog
from ..events import MESSAGE_OVERHEAD_BYTES, relay_overflow

DEFAULT_MAX_BACKLOG_BYTES = 4 * 1024 * 1024
PRESSURE_MESSAGES = 8
"""A publish waits while one of the channel's local subscribers has more than this pending..."""
DRAINED_MESSAGES = 2
"""...until it is down to this many: publishers slow to the pace of delivery (backpressure)."""
PRESSURE_WAIT_SECONDS = 2.0


def message_size(message: dict[str, Any]) -> int:
    """What a queued event costs, for the backlog's bound."""
    data = message.get("data")
    return MESSAGE_OVERHEAD_BYTES + (len(data) if isinstance(data, (bytes, str)) else 0)


async def receive_from(backlog: Backlog, forget: Callable[[], None]) -> dict[str, Any]:
    r"""The next event of a consumer's backlog, its overflow as a ``relay.overflow`` event.

    Channels cancels a consumer's receive only when the consumer ends, so a cancelled
    receive ``forget``\ s the channel.
    """
    try:
        message = await backlog.get()
    except asyncio.CancelledError:
        forget()
        raise
    return relay_overflow(backlog.dropped) if message is OVERFLOWED else message  # type: ignore[return-value]


async def wait_for_subscribers(backlogs: Iterable[Backlog | None], stop: asyncio.Future[None] | None = None) -> None:
    """Backpressure toward publishers: wait while the fullest local backlog is long.

    A backlog grows only when this process hands messages to sockets slower than they are
    published (a slow *reader* fills Twisted's buffer instead, see ``ws_protocol``), so
    making the publisher wait keeps latency low and no subscriber is cut off as "slow"
    merely because the server was busy. Bounded, so a stuck consumer cannot stall publishers;
    no wait, or the end of one, once ``stop`` is done (the server drains: answer at once).
    """
    fullest = max((b for b in backlogs if b is not None), key=len, default=None)
    if fullest is None or len(fullest) <= PRESSURE_MESSAGES or (stop is not None and stop.done()):
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(PRESSURE_WAIT_SECONDS):
            if stop is None:
                await fullest.drained(DRAINED_MESSAGES)
                return
            drained = asyncio.ensure_future(fullest.drained(DRAINED_MESSAGES))
            try:
                await asyncio.wait((drained, stop), return_when=asyncio.FIRST_COMPLETED)
            finally:
                drained.cancel()
