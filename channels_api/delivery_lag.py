"""``webchannel_delivery_lag_seconds``: from a publish being accepted to its last local frame written.

Observed once per message and process, at a cost that does not grow with the number of
subscribers: a frame costs one identity comparison with the event relayed before it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from . import metrics


class DeliveryLag:
    """Observes each relayed message's lag once, after the last local subscriber wrote it.

    A fan-out puts one event object into every local subscriber's backlog at once, which
    wakes their relay tasks for the same turn of the event loop; each hands the message to
    its socket without waiting (webchannel's server writes it there and then). So the first
    subscriber to write a message schedules one callback (``call_soon``: it runs after
    everything already scheduled for this turn), and that callback, which runs once the last
    of them has written it, observes every message written in the turn, each once.
    """

    __slots__ = ("last", "loop", "pending")

    def __init__(self) -> None:
        self.last: Mapping[str, Any] | None = None
        """The event written last; a subscriber writing the same one again costs nothing more."""
        self.pending: dict[int, Mapping[str, Any]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop :meth:`observe` is scheduled on, while it is."""

    def written(self, event: Mapping[str, Any]) -> None:
        """A subscriber wrote ``event``, which is not the event written just before."""
        self.last = event
        if id(event) in self.pending or "published_at" not in event:  # from a version that did not send it
            return
        loop = asyncio.get_running_loop()
        if self.loop is not loop:  # the first message of this turn (or of a new loop: one stopped meanwhile)
            self.pending.clear()
            self.loop = loop
            loop.call_soon(self.observe)
        self.pending[id(event)] = event  # held, so its id is not reused before it is observed

    def observe(self) -> None:
        now = time.time()
        for event in self.pending.values():
            # Wall clock, comparable across processes; two hosts' clocks may differ a little.
            metrics.delivery_lag.observe(max(0.0, now - event["published_at"]))
        self.pending.clear()
        self.loop = None
