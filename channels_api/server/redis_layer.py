"""channels-redis's pub/sub layer with webchannel's bounded backlogs.

Relies on these channels_redis internals (verified by :mod:`channels_api.fence` when
``redis.url`` is set; ``INTERNALS`` below):

- ``channels_redis.pubsub.RedisPubSubChannelLayer`` (subclassed): ``_layers``, ``_args`` and
  ``_kwargs`` (set in ``__init__``), ``_get_layer`` (overridden) and ``deserialize``:
  one loop layer per event loop, built here with webchannel's subclass;
- ``channels_redis.utils._wrap_close``: closes a loop's layer when its loop closes;
- ``channels_redis.pubsub.RedisPubSubLoopLayer`` (subclassed): ``_subscribe_to_channel``
  (overridden), ``_get_group_channel_name``, and the ``channels``, ``groups``, ``_shards``
  and ``channel_layer`` its ``__init__`` sets;
- ``channels_redis.pubsub.RedisSingleShardConnection`` (subclassed): ``_receive_message``,
  ``_do_receiving`` and ``_ensure_redis`` (overridden: the client is made on a capped pool of
  :mod:`channels_api.redis_pool`), and the ``host``, ``channel_layer``, ``_redis``, ``_pubsub``
  and ``_lock`` its ``__init__`` sets. ``_pubsub`` is a redis-py ``PubSub``, used through its
  public API (``subscribed``, ``get_message``, ``ping``, ``connection_pool``); ``_lock`` is
  held while the receive loop redials, as ``subscribe`` and ``unsubscribe`` hold it. Its
  ``publish``, ``subscribe`` and ``unsubscribe`` are wrapped so that a failure names its
  server (``publish`` and ``subscribe`` also refuse while the subscriptions are restored
  after a redial), and its ``_subscribed_to`` (set in ``__init__``) tells whether a
  subscribe asks Redis at all;
- ``channels_redis.utils._consistent_hash``: which shard a group's Redis channel is on, to
  send a readiness probe through every server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from channels_redis import pubsub, utils
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from ..backlog import Backlog
from ..exceptions import LayerUnavailable
from ..layers.relay import DEFAULT_MAX_BACKLOG_BYTES, message_size, receive_from, wait_for_subscribers
from ..redis_hosts import describe_host
from ..redis_pool import bounded_client

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
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "_ensure_redis"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "_redis", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "host", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "channel_layer", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "_pubsub", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "_lock", "__init__"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "publish"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "subscribe"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "unsubscribe"),
    ("channels-redis", "channels_redis.pubsub.RedisSingleShardConnection", "_subscribed_to", "__init__"),
    ("channels-redis", "channels_redis.utils", "_consistent_hash"),
)

logger = logging.getLogger(__name__)

REDIAL_FIRST_DELAY_SECONDS = 0.0125
REDIAL_MAX_DELAY_SECONDS = 0.05
"""A lost pub/sub connection is redialled at intervals of 12.5 ms, then 25 ms, then 50 ms: its
subscriptions are back within about 50 ms of Redis answering again, for at most twenty
connection attempts (or Sentinel lookups) a second per server while it stays down. The
attempts fall on multiples of the interval on the wall clock, so every process (on clocks
kept in step by NTP) redials at the same moments and gets its subscriptions back at once."""
RESTORE_TIMEOUT_SECONDS = 2.0
"""A redial whose resubscription is not confirmed by then counts as failed and is retried."""
RESTORE_GRACE_SECONDS = 1.5 * REDIAL_MAX_DELAY_SECONDS
"""Refusals go on this long after the subscriptions are back (see ``_RedisShard._restore``)."""
WATCH_GROUP = "wc-connection"
"""A group every process subscribes on every server it uses and nobody publishes to (no
channel id maps to it: their groups start with ``wc.``); see ``_RedisShard._watch``."""


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

    # What webchannel needs of a layer (channels_api.layers.WebchannelLayer), spelled out: the
    # proxy channels-redis builds with __getattr__ needs a running loop to be asked.

    async def new_channel(self, prefix: str = "specific.") -> str:
        return await self._get_layer().new_channel(prefix)  # type: ignore[no-any-return]

    async def group_add(self, group: str, channel: str) -> None:
        await self._get_layer().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        await self._get_layer().group_discard(group, channel)

    async def group_send(self, group: str, message: Mapping[str, Any]) -> None:
        await self._get_layer().group_send(group, message)

    async def receive(self, channel: str) -> dict[str, Any]:
        return await self._get_layer().receive(channel)

    def backlog(self, channel: str) -> Backlog:
        return self._get_layer().backlog(channel)

    def forget_channel(self, channel: str) -> None:
        self._get_layer().forget_channel(channel)

    async def backpressure(self, group: str, stop: asyncio.Future[None] | None = None) -> None:
        await self._get_layer().backpressure(group, stop)

    def restoring(self) -> list[str]:
        return self._get_layer().restoring()

    def probe_groups(self, stem: str) -> list[str]:
        return self._get_layer().probe_groups(stem)

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

    def backlog(self, channel: str) -> Backlog:
        """The queue of a channel made by ``new_channel``, which its subscription reads."""
        backlog = self.channels.get(channel)
        if backlog is None:
            backlog = self.channels[channel] = Backlog(self._max_backlog_bytes, message_size)
        return backlog  # type: ignore[no-any-return]

    async def backpressure(self, group: str, stop: asyncio.Future[None] | None = None) -> None:
        """Wait while a local subscriber of ``group`` lags, until ``stop`` (see :func:`wait_for_subscribers`)."""
        members = self.groups.get(self._get_group_channel_name(group), ())
        await wait_for_subscribers((self.channels.get(channel) for channel in members), stop)

    def forget_channel(self, channel: str) -> None:
        """Drop a channel's backlog (its consumer is gone); group_discard leaves Redis groups."""
        backlog = self.channels.pop(channel, None)
        if backlog is not None:
            backlog.close()

    def restoring(self) -> list[str]:
        """The servers (named, password redacted) on which this process is restoring its
        subscriptions after a redial: until they are back, ``/readyz`` answers 503."""
        return [shard.server for shard in self._shards if shard.restoring]

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
    restoring = False
    """From the loss of the pub/sub connection until every subscription is active on its
    replacement, and a grace after that (see ``_restore``). Publishes and new subscriptions
    through this server are refused meanwhile, so this process never answers 204 for a
    message its own subscribers would miss, and a subscriber is never told it is subscribed
    when it is not (one attribute read per publish)."""
    _lost_at = 0.0
    _redis: Any  # channels_redis's client of the shard, made by _ensure_redis
    _watching: object = ()  # the pub/sub connection object watched; never None, which _pubsub starts as

    @property
    def server(self) -> str:
        return describe_host(self.host)

    def _ensure_redis(self) -> None:
        """channels_redis's, on a capped pool that closes idle connections: a shard needs two, its
        pub/sub connection and one to publish on (``publish`` holds ``_lock``: one at a time)."""
        if self._redis is None:
            client = bounded_client(self.host)
            self._redis, self._pubsub = client, client.pubsub()

    def _restoring_refusal(self) -> ServerUnavailable:
        return ServerUnavailable(
            f"Redis {self.server}: this process is restoring its subscriptions after a reconnect", self.server
        )

    async def publish(self, channel: str, message: bytes) -> None:
        if self.restoring:  # an attribute read, not a call: this is every publish's path
            raise self._restoring_refusal()
        with self._named_failures(answered=True):
            if self._watching is not self._pubsub:
                await self._watch()
            await super().publish(channel, message)

    async def subscribe(self, channel: str) -> None:
        if self.restoring:
            raise self._restoring_refusal()
        # Only a new subscription asks Redis; a known one returns without a word from it.
        with self._named_failures(answered=channel not in self._subscribed_to):
            if self._watching is not self._pubsub:
                await self._watch()
            await super().subscribe(channel)

    async def _watch(self) -> None:
        """Subscribe :data:`WATCH_GROUP` on this server, once per pub/sub connection object.

        Then the receive loop reads at all times, also in a process that only publishes, so
        every process notices a lost connection at once and follows the same redial schedule
        from the same moment: a publishing process answers 204 again when its subscription is
        back, which is when the other processes' come back too.
        """
        await super().subscribe(self.channel_layer._get_group_channel_name(WATCH_GROUP))
        self._watching = self._pubsub

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
        """Read the pub/sub connection; after a failure, redial promptly and restore every subscription."""
        delay = REDIAL_FIRST_DELAY_SECONDS
        while True:
            pubsub = self._pubsub
            if pubsub is None or not pubsub.subscribed:
                self.restoring = False  # nothing to restore
                await asyncio.sleep(0.1)
                continue
            try:
                if self.restoring:
                    await self._restore(pubsub)
                    delay = REDIAL_FIRST_DELAY_SECONDS
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                self._lost(exc)
                await asyncio.sleep(delay - time.time() % delay)  # the next multiple of delay
                delay = min(2 * delay, REDIAL_MAX_DELAY_SECONDS)
                continue
            try:  # inline rather than _deliver: this is every message's path
                self._receive_message(message)
            except Exception:  # a message nobody here can decode must not stop the loop
                logger.exception("a message from Redis %s could not be decoded; dropped", self.server)

    def _deliver(self, message: dict[str, Any] | None) -> None:
        try:
            self._receive_message(message)
        except Exception:  # a message nobody here can decode must not stop the loop
            logger.exception("a message from Redis %s could not be decoded; dropped", self.server)

    async def _restore(self, pubsub: Any) -> None:
        """Redial if needed, then wait for the answer to a PING sent after the resubscription,
        and go on refusing for :data:`RESTORE_GRACE_SECONDS` more.

        redis-py's ``PubSub`` replays every subscription it knows as the first command on a new
        connection, and Redis answers a connection's commands in order, so the PING's answer
        proves every subscription is active again. The grace covers the other processes: one
        whose redial at the same moment just missed the server's return (or a new master not
        yet announced) redials at the next moment of the grid and is back before this process
        answers 204 again.
        """
        marker = uuid.uuid4().hex.encode()
        async with self._lock:  # subscribe and unsubscribe redial too: never two redials at once
            # Idle publishing connections made before the loss are most likely dead too: closed
            # now, the next publish dials afresh instead of failing once on each of them.
            await pubsub.connection_pool.disconnect(inuse_connections=False)
            await pubsub.ping(marker)
        async with asyncio.timeout(RESTORE_TIMEOUT_SECONDS):
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message is None:
                    continue
                if message["type"] != "pong":
                    self._deliver(message)
                elif message["data"] == marker:  # not an earlier attempt's answer
                    break
        back = time.monotonic()
        graced = back + RESTORE_GRACE_SECONDS
        while (left := graced - time.monotonic()) > 0:  # delivering meanwhile
            self._deliver(await pubsub.get_message(ignore_subscribe_messages=True, timeout=left))
        self.restoring = False
        # The outage's end is logged once: here, or by the next command Redis answers.
        ended, self.failing = ("channel layer available again: " if self.failing else ""), False
        logger.warning(
            "%sRedis pub/sub connection restored: subscriptions on %s active again %.3f s after the loss",
            ended,
            self.server,
            back - self._lost_at,
        )

    def _lost(self, exc: Exception) -> None:
        if self.restoring:
            return
        self.restoring, self._lost_at = True, time.monotonic()
        # The outage's start is logged once: here, or already by a command that failed.
        began, self.failing = ("" if self.failing else "channel layer unavailable: "), True
        logger.warning(
            "%sRedis pub/sub connection lost (%s: %s); publishes and subscribes through %s get 503 "
            "and 4013 until its subscriptions are restored",
            began,
            type(exc).__name__,
            exc,
            self.server,
        )


def _what_failed(exc: BaseException) -> str:
    """What went wrong, in words an operator can act on (redis-py's messages hold no password)."""
    if isinstance(exc, AuthenticationError):
        return f"refused the credentials ({exc}): check the user and password in redis.url"
    if isinstance(exc, NoPermissionError):
        return f"denied a command ({exc}): check the ACL user's permissions"
    return f"is unavailable ({type(exc).__name__}: {exc})"
