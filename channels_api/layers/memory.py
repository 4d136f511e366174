"""The embedded, single-process channel layer (no Redis): the default."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import Any

from channels.layers import BaseChannelLayer

from ..backlog import Backlog
from .relay import DEFAULT_MAX_BACKLOG_BYTES, message_size, receive_from, wait_for_subscribers

__all__ = ["InMemoryChannelLayer"]


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

    def backlog(self, channel: str) -> Backlog:
        """The queue of ``channel`` (a consumer's own, from :meth:`new_channel`), read by its subscription."""
        return self._backlog(channel)

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

    async def group_send(self, group: str, message: Mapping[str, Any]) -> None:
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

    def restoring(self) -> list[str]:
        """Nothing to restore: the layer lives in this process."""
        return []

    def probe_groups(self, stem: str) -> list[str]:
        """One group carries a readiness probe through the whole layer."""
        return [stem]
