"""channels-redis's pub/sub layer with webchannel's bounded backlogs.

Relies on these channels_redis internals (verified at startup by :mod:`.compat` when
``redis.url`` is set; ``INTERNALS`` below):

- ``channels_redis.pubsub.RedisPubSubChannelLayer`` (subclassed): ``_layers``, ``_args`` and
  ``_kwargs`` (set in ``__init__``), ``_get_layer`` (overridden) and ``deserialize``:
  one loop layer per event loop, built here with webchannel's subclass;
- ``channels_redis.utils._wrap_close``: closes a loop's layer when its loop closes;
- ``channels_redis.pubsub.RedisPubSubLoopLayer`` (subclassed): ``_subscribe_to_channel``
  (overridden), ``_get_group_channel_name``, and the ``channels``, ``groups``, ``_shards``
  and ``channel_layer`` its ``__init__`` sets;
- ``channels_redis.pubsub.RedisSingleShardConnection`` (subclassed): ``_receive_message`` and
  ``_do_receiving`` (overridden), and the ``host``, ``channel_layer`` and ``_pubsub`` its
  ``__init__`` sets. ``_pubsub`` is a redis-py ``PubSub``, used through its public API
  (``subscribed``, ``get_message``). Its ``publish``, ``subscribe`` and ``unsubscribe`` are
  wrapped so that a failure names its server, and its ``_subscribed_to`` (set in ``__init__``)
  tells whether a subscribe asks Redis at all;
- ``channels_redis.utils._consistent_hash``: which shard a group's Redis channel is on, to
  send a readiness probe through every server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from channels_redis import pubsub, utils
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from ..backlog import Backlog
from ..exceptions import LayerUnavailable
from ..layers import DEFAULT_MAX_BACKLOG_BYTES, message_size, receive_from, wait_for_subscribers
from ..redis_hosts import describe_host

INTERNALS = (
    ("channels-redis", "channels_redis.pubsub", "RedisPubSubChannelLayer"),
    ("channels-redis", "channels_redis.pubsub.RedisPubSubChannelLayer", "_layers", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisPubSubChannelLayer", "_args", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisPubSubChannelLayer", "_kwargs", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisPubSubChannelLayer", "_get_layer"),
    ("channels-redis", "channels_redis.pubsub.RedisPubSubChannelLayer", "deserialize"),
    ("channels-redis", "channels_redis.utils", "_wrap_close"),
    ("channels-redis", "channels_redis.pubsub", "RedisPubSubLoopLayer"),
    ("channels-redis", "channels_redis.pubsub.RedisPubSubLoopLayer", "_subscribe_to_channel"),
    ("channels-redis", "channels_redis.pubsub.RedisPubSubLoopLayer", "_get_group_channel_name"),
    ("channels-redis", "channels_redis.pubsub.RedisPubSubLoopLayer", "channels", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisPubSubLoopLayer", "groups", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisPubSubLoopLayer", "_shards", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisPubSubLoopLayer", "channel_layer", "__init__"),
    ("channels-redis", "channels_redis.pubsub", "RedisSingleShardConnection"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "_receive_message"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "_do_receiving"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "host", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "channel_layer", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "_pubsub", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "publish"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "subscribe"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "unsubscribe"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "_subscribed_to", "__init__"),
    ("channels-redis", "channels_redis.utils", "_consistent_hash"),
)

logger = logging.getLogger(__name__)


class RedisPubSubChannelLayer(pubsub.RedisPubSubChannelLayer):  # type: ignore[misc]
    """channels-redis's pub/sub layer, with bounded backlogs and one Redis subscription per group.

    A consumer's own (specific) channel is kept local: group messages arrive on the
    group's subscription and are fanned out here, so subscribing each consumer's channel
    in Redis too would double the subscriptions and make ``new_channel`` need Redis.
    Direct ``send`` to another process's specific channel is therefore not supported.
    """

    def __init__(self, *args: Any, max_backlog_bytes: int = DEFAULT_MAX_BACKLOG_BYTES, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_backlog_bytes = max_backlog_bytes

    def _get_layer(self) -> _RedisLoopLayer:
        loop = asyncio.get_running_loop()
        try:
            return self._layers[loop]  # type: ignore[no-any-return]
        except KeyError:
            layer = _RedisLoopLayer(
                *self._args, max_backlog_bytes=self._max_backlog_bytes, channel_layer=self, **self._kwargs
            )
            self._layers[loop] = layer
            utils._wrap_close(self, loop)
            return layer


class _RedisLoopLayer(pubsub.RedisPubSubLoopLayer):  # type: ignore[misc]
    def __init__(self, *args: Any, max_backlog_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_backlog_bytes = max_backlog_bytes
        self._shards: list[_RedisShard] = [_RedisShard(shard.host, self) for shard in self._shards]

    async def _subscribe_to_channel(self, channel: str) -> None:
        self.channels[channel] = Backlog(self._max_backlog_bytes, message_size)

    async def receive(self, channel: str) -> dict[str, Any]:
        if channel not in self.channels:
            await self._subscribe_to_channel(channel)
        return await receive_from(self.channels[channel], lambda: self.forget_channel(channel))

    async def backpressure(self, group: str) -> None:
        """Wait while a local subscriber of ``group`` lags (see :func:`wait_for_subscribers`)."""
        members = self.groups.get(self._get_group_channel_name(group), ())
        await wait_for_subscribers(self.channels.get(channel) for channel in members)

    def forget_channel(self, channel: str) -> None:
        """Drop a channel's backlog (its consumer is gone); group_discard leaves Redis groups."""
        backlog = self.channels.pop(channel, None)
        if backlog is not None:
            backlog.close()

    def probe_groups(self, stem: str) -> list[str]:
        """One group name per Redis server (``stem``, or ``stem.N``), so a readiness probe
        sent to each crosses every server this process uses."""
        count = len(self._shards)
        if count == 1:
            return [stem]
        found: dict[int, str] = {}
        for n in range(64 * count):  # each try lands on a given server with odds 1/count
            group = f"{stem}.{n}"
            found.setdefault(utils._consistent_hash(self._get_group_channel_name(group), count), group)
            if len(found) == count:
                return [found[index] for index in range(count)]
        raise LayerUnavailable(f"no readiness group found for each of {count} Redis servers")


class ServerUnavailable(LayerUnavailable):
    """One Redis server failed a command; ``server`` names it (password redacted).

    Its connection logs the outage once when it begins and once when it ends, so callers
    need not (with several servers, one that is down and one that is up would otherwise
    take turns logging).
    """

    def __init__(self, message: str, server: str) -> None:
        super().__init__(message)
        self.server = server


class _RedisShard(pubsub.RedisSingleShardConnection):  # type: ignore[misc]
    """A shard that decodes each message once for all local subscribers, whose receive loop
    reports an outage once, not with a traceback a second, and whose failures name the
    server (password redacted) in one line, logged when an outage begins and when it ends."""

    failing = False

    @property
    def server(self) -> str:
        return describe_host(self.host)

    async def publish(self, channel: str, message: bytes) -> None:
        with self._named_failures(answered=True):
            await super().publish(channel, message)

    async def subscribe(self, channel: str) -> None:
        # Only a new subscription asks Redis; a known one returns without a word from it.
        with self._named_failures(answered=channel not in self._subscribed_to):
            await super().subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        with self._named_failures(answered=False):
            await super().unsubscribe(channel)

    @contextlib.contextmanager
    def _named_failures(self, answered: bool) -> Iterator[None]:
        """Name the server in a failure; ``answered``: success means Redis did answer."""
        try:
            yield
        except (RedisError, OSError) as exc:
            failure = ServerUnavailable(f"Redis {self.server} {_what_failed(exc)}", self.server)
            if not self.failing:
                self.failing = True
                log = logger.error if isinstance(exc, AuthenticationError | NoPermissionError) else logger.warning
                log("channel layer unavailable: %s; its channels get 503 and 4013 until it is back", failure)
            raise failure from exc
        if self.failing and answered:
            self.failing = False
            logger.warning("channel layer available again: Redis %s answers", self.server)

    def _receive_message(self, message: dict[str, Any] | None) -> None:
        if message is None:
            return
        name = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
        layer = self.channel_layer
        targets = (name,) if name in layer.channels else layer.groups.get(name, ())
        if not targets:
            return
        event = layer.channel_layer.deserialize(message["data"])
        for channel in targets:
            backlog = layer.channels.get(channel)
            if backlog is not None:
                backlog.put_nowait(event)

    async def _do_receiving(self) -> None:
        failing = False
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    if failing:
                        logger.warning("Redis pub/sub connection restored")
                        failing = False
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                if not failing:
                    logger.warning("Redis pub/sub connection lost (%s); retrying every second", exc)
                    failing = True
                await asyncio.sleep(1)


def _what_failed(exc: BaseException) -> str:
    """What went wrong, in words an operator can act on (redis-py's messages hold no password)."""
    if isinstance(exc, AuthenticationError):
        return f"refused the credentials ({exc}): check the user and password in redis.url"
    if isinstance(exc, NoPermissionError):
        return f"denied a command ({exc}): check the ACL user's permissions"
    return f"is unavailable ({type(exc).__name__}: {exc})"
