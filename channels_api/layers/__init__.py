"""What webchannel needs of a channel layer, and the two layers that provide it.

Channels' layer API (``new_channel``, ``group_add``, ``group_discard``, ``group_send``,
``receive``) is not enough: webchannel reads each subscriber's bounded backlog directly, asks
publishers to wait for slow local subscribers, drops a subscriber's queue when it leaves, and
asks whether the layer is restoring its subscriptions (``/readyz``) and how to send a readiness
probe across every server. :class:`WebchannelLayer` names all of it; both layers implement it
(the in-process :class:`~channels_api.layers.memory.InMemoryChannelLayer` and the Redis one in
:mod:`channels_api.server.redis_layer`), and the ``channels_api.E002`` system check refuses to
start with any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from ..backlog import Backlog
from .memory import InMemoryChannelLayer

__all__ = ["InMemoryChannelLayer", "WebchannelLayer", "missing_methods"]


@runtime_checkable
class WebchannelLayer(Protocol):
    """The channel layer as webchannel uses it."""

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A channel of this process for one subscriber (its backlog is created with it)."""
        ...

    async def group_add(self, group: str, channel: str) -> None: ...

    async def group_discard(self, group: str, channel: str) -> None: ...

    async def group_send(self, group: str, message: Mapping[str, Any]) -> None: ...

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next event of ``channel`` (readiness probes read their answer with it)."""
        ...

    def backlog(self, channel: str) -> Backlog:
        """The queue of a channel made by :meth:`new_channel`, which its subscription reads."""
        ...

    def forget_channel(self, channel: str) -> None:
        """Drop a channel's queue: its subscriber is gone (waiting publishers are released)."""
        ...

    async def backpressure(self, group: str, stop: asyncio.Future[None] | None = None) -> None:
        """Wait (bounded) while a local subscriber of ``group`` lags, or until ``stop`` is done."""
        ...

    def restoring(self) -> list[str]:
        """The servers on which this process is restoring its subscriptions (empty: none)."""
        ...

    def probe_groups(self, stem: str) -> list[str]:
        """Group names that together carry a readiness probe through every server of the layer."""
        ...


def missing_methods(layer: object) -> list[str]:
    """The methods of :class:`WebchannelLayer` that ``layer`` lacks (empty when it is one)."""
    names = [
        name for name in vars(WebchannelLayer) if not name.startswith("_") and callable(vars(WebchannelLayer)[name])
    ]
    return [name for name in names if not callable(getattr(type(layer), name, None))]
