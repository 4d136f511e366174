"""Channel layers that bound each subscriber's backlog instead of dropping silently.

Both layers deliver group messages into a :class:`~channels_api.backlog.Backlog` per
consumer. When a subscriber falls more than ``max_backlog_bytes`` behind, its next
``receive`` returns a ``relay.overflow`` event and the consumer closes the socket with
4008. Delivery stays at most once: nothing is stored beyond those backlogs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from channels.layers import BaseChannelLayer

from .backlog import OVERFLOWED, Backlog
from .events import MESSAGE_OVERHEAD_BYTES, relay_overflow
from .exceptions import LayerUnavailable

__all__ = [
    "InMemoryChannelLayer",
    "LayerUnavailable",
    "Readiness",
    "layer_outage",
    "readiness",
    "receive_from",
    "round_trip",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BACKLOG_BYTES = 4 * 1024 * 1024
PRESSURE_MESSAGES = 8
"""A publish waits while one of the channel's local subscribers has more than this pending..."""
DRAINED_MESSAGES = 2
"""...until it is down to this many: publishers slow to the pace of delivery (backpressure)."""
ROUND_TRIP_TIMEOUT_SECONDS = 2.0
PRESSURE_WAIT_SECONDS = 2.0
READY_MAX_AGE_SECONDS = 1.0
"""A readiness result, ok or failed, is reused this long after its probe started..."""
READY_TIMEOUT_SECONDS = 0.8
"""...and a probe gives up after this: an outage shows as 503 at most 1.8 s after it begins."""


RelaySource = tuple[Callable[[str], Awaitable[dict[str, Any]]], Callable[[str], list[dict[str, Any]]]]
"""A layer's ``receive`` and ``receive_pending``, looked up once for a consumer's relay loop."""

BATCH_MESSAGES = 64
"""At most this many messages queued behind the one a subscriber woke for are written with it."""


def _is_message(event: dict[str, Any]) -> bool:
    return event["type"] == "relay.message"


def pending_messages(backlog: Backlog | None) -> list[dict[str, Any]]:
    """The ``relay.message`` events queued in ``backlog`` right now (up to the next other event)."""
    return backlog.take_while(_is_message, BATCH_MESSAGES) if backlog is not None else []


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


class OutageLog:
    """Logs a channel-layer outage when it starts and when it ends, not once per request."""

    failing = False

    def failed(self, action: str, exc: BaseException) -> None:
        if getattr(exc, "server", None):  # one Redis server's failure: its connection logs it, once
            return
        if not self.failing:
            self.failing = True
            logger.warning(
                "channel layer unavailable (%s: %s): publishes get 503, subscribes close with 4013 until it is back",
                action,
                type(exc).__name__,
            )

    def succeeded(self) -> None:
        if self.failing:
            self.failing = False
            logger.warning("channel layer available again")


layer_outage = OutageLog()


async def round_trip(layer: Any, within: float = ROUND_TRIP_TIMEOUT_SECONDS) -> None:
    """Send a probe through ``layer`` as a group message and wait until it comes back here.

    This exercises the path every published message takes (for Redis: PUBLISH, the
    pub/sub connection, the local fan-out), so a wedged subscription fails too.
    """
    answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    await _probe(layer, within, answer)
    failure = answer.result()
    if failure is not None:
        raise LayerUnavailable(failure)


async def _probe(layer: Any, within: float, answer: asyncio.Future[str | None]) -> None:
    """A round trip; ``answer`` gets None or what failed as soon as that is known, before the cleanup."""
    stem = f"wc-readyz.{uuid.uuid4().hex}"
    channel = None
    groups: list[str] = []
    try:
        async with asyncio.timeout(within):
            channel = await layer.new_channel("readyz.")
            # Several Redis servers: one group on each, so every server is crossed.
            groups = layer.probe_groups(stem) if hasattr(layer, "probe_groups") else [stem]
            for group in groups:
                await layer.group_add(group, channel)
            for group in groups:
                await layer.group_send(group, {"type": "readyz.probe"})
            for _ in groups:
                await layer.receive(channel)
        answer.set_result(None)
    except TimeoutError:
        answer.set_result(f"the channel layer did not answer within {within:g} s")
    except LayerUnavailable as exc:  # its message names the server that failed, password redacted
        answer.set_result(str(exc))
    except Exception as exc:
        answer.set_result(f"the channel layer is unavailable ({type(exc).__name__})")
    finally:
        if not answer.done():  # cancelled
            answer.set_result("the readiness probe was cancelled")
        if channel is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(within):
                    for group in groups:
                        await layer.group_discard(group, channel)
            layer.forget_channel(channel)


class Readiness:
    """``/readyz``'s check: one round trip shared by concurrent callers, its result reused for a while.

    However often probes ask, the channel layer (Redis) sees at most one round trip (one per
    server) per ``max_age`` seconds per process. ``max_age + within`` bounds how long after an outage
    begins a 200 can still be answered; a layer that knows it is restoring its subscriptions
    (``restoring()``, after its Redis connection dropped) gets 503 at once, without a probe.
    """

    def __init__(
        self,
        max_age: float = READY_MAX_AGE_SECONDS,
        within: float = READY_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age = max_age
        self.within = within
        self.clock = clock
        self._answer: asyncio.Future[str | None] | None = None
        self._started = 0.0
        self._for: tuple[object, object] | None = None  # (event loop, layer) the answer belongs to
        self._probes: set[asyncio.Task[None]] = set()  # running, cleanup included

    async def check(self, layer: Any) -> None:
        """Return if the layer carried a probe back lately (or does now); else raise LayerUnavailable."""
        restoring = getattr(layer, "restoring", None)
        servers = restoring() if restoring is not None else ()
        if servers:
            self._answer = None  # once restored, the next call probes afresh: no earlier answer is reused
            raise LayerUnavailable(f"restoring this process's subscriptions on Redis {', '.join(servers)}")
        loop = asyncio.get_running_loop()
        answer = self._answer
        if answer is None or self._for != (loop, layer) or self._expired(answer):
            answer = self._answer = loop.create_future()
            self._started, self._for = self.clock(), (loop, layer)
            probe = loop.create_task(_probe(layer, self.within, answer))
            self._probes.add(probe)
            probe.add_done_callback(self._probes.discard)
        failure = await asyncio.shield(answer)  # a caller that goes away does not cancel the others' probe
        if failure is not None:
            raise LayerUnavailable(failure)

    def _expired(self, answer: asyncio.Future[str | None]) -> bool:
        return answer.done() and self.clock() - self._started >= self.max_age


readiness = Readiness()


def message_size(message: dict[str, Any]) -> int:
    data = message.get("data")
    return MESSAGE_OVERHEAD_BYTES + (len(data) if isinstance(data, (bytes, str)) else 0)


class InMemoryChannelLayer(BaseChannelLayer):  # type: ignore[misc]
    """The embedded, single-process layer.

    Unlike channels' ``InMemoryChannelLayer`` it never drops a group message silently
    (a full backlog becomes a ``relay.overflow`` event), never expires group membership
    (so a subscriber does not go quiet after a day), and hands the same message dict to
    every member instead of deep-copying it per member. Consumers must not mutate events.
    """

    extensions = ["groups", "flush"]

    def __init__(self, max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_backlog_bytes = max_backlog_bytes
        self._backlogs: dict[str, Backlog] = {}
        self._groups: dict[str, dict[str, None]] = {}
        self._memberships: dict[str, list[str]] = {}  # a subscriber is in one group: a list is smallest

    def _backlog(self, channel: str) -> Backlog:
        backlog = self._backlogs.get(channel)
        if backlog is None:
            backlog = self._backlogs[channel] = Backlog(self.max_backlog_bytes, message_size)
        return backlog

    async def new_channel(self, prefix: str = "specific.") -> str:
        channel = f"{prefix}inmemory!{uuid.uuid4().hex}"
        self._backlog(channel)
        return channel

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        self._backlog(channel).put_nowait(message)

    async def receive(self, channel: str) -> dict[str, Any]:
        self.require_valid_channel_name(channel)
        return await receive_from(self._backlog(channel), lambda: self.forget_channel(channel))

    def receive_pending(self, channel: str) -> list[dict[str, Any]]:
        """The messages already queued for ``channel``, without waiting (see :func:`pending_messages`)."""
        return pending_messages(self._backlogs.get(channel))

    def relay_source(self) -> RelaySource:
        """``receive`` and ``receive_pending``, for a consumer's relay loop."""
        return self.receive, self.receive_pending

    def forget_channel(self, channel: str) -> None:
        """Drop a channel's backlog and memberships (its consumer is gone)."""
        backlog = self._backlogs.pop(channel, None)
        if backlog is not None:
            backlog.close()
        for group in self._memberships.pop(channel, ()):
            self._discard(group, channel)

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self._groups.setdefault(group, {})[channel] = None
        groups = self._memberships.setdefault(channel, [])
        if group not in groups:
            groups.append(group)

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        self._discard(group, channel)
        groups = self._memberships.get(channel)
        if groups is not None and group in groups:
            groups.remove(group)

    def _discard(self, group: str, channel: str) -> None:
        members = self._groups.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                del self._groups[group]

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        for channel in self._groups.get(group, ()):
            self._backlog(channel).put_nowait(message)

    async def backpressure(self, group: str, stop: asyncio.Future[None] | None = None) -> None:
        """Wait while a subscriber of ``group`` lags, until ``stop`` (see :func:`wait_for_subscribers`)."""
        await wait_for_subscribers((self._backlogs.get(channel) for channel in self._groups.get(group, ())), stop)

    async def flush(self) -> None:
        self._backlogs.clear()
        self._groups.clear()
        self._memberships.clear()

    async def close(self) -> None:
        pass
