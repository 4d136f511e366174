"""Is the channel layer carrying messages? ``/readyz``'s probe, and the log of an outage's start and end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from .exceptions import LayerUnavailable
from .layers import WebchannelLayer

__all__ = ["OutageLog", "Readiness", "round_trip"]

logger = logging.getLogger(__name__)

ROUND_TRIP_TIMEOUT_SECONDS = 2.0
READY_MAX_AGE_SECONDS = 1.0
"""A readiness result, ok or failed, is reused this long after its probe started..."""
READY_TIMEOUT_SECONDS = 0.8
"""...and a probe gives up after this: an outage shows as 503 at most 1.8 s after it begins."""


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


async def round_trip(layer: WebchannelLayer, within: float = ROUND_TRIP_TIMEOUT_SECONDS) -> None:
    """Send a probe through ``layer`` as a group message and wait until it comes back here.

    This exercises the path every published message takes (for Redis: PUBLISH, the
    pub/sub connection, the local fan-out), so a wedged subscription fails too.
    """
    answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    await _probe(layer, within, answer)
    failure = answer.result()
    if failure is not None:
        raise LayerUnavailable(failure)


async def _probe(layer: WebchannelLayer, within: float, answer: asyncio.Future[str | None]) -> None:
    """A round trip; ``answer`` gets None or what failed as soon as that is known, before the cleanup."""
    stem = f"wc-readyz.{uuid.uuid4().hex}"
    channel = None
    groups: list[str] = []
    try:
        async with asyncio.timeout(within):
            channel = await layer.new_channel("readyz.")
            # Several Redis servers: one group on each, so every server is crossed.
            groups = layer.probe_groups(stem)
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

    async def check(self, layer: WebchannelLayer) -> None:
        """Return if the layer carried a probe back lately (or does now); else raise LayerUnavailable."""
        servers = layer.restoring()
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
