"""One subscriber of one channel, whatever carries it: a WebSocket or an event stream.

The lifecycle is the same for both transports, and lives here once:

1. :meth:`Subscription.open` admits the subscriber against ``server.max_connections`` (it counts
   as open from then on, before anything is awaited, so concurrent handshakes cannot all pass
   the check) and authorizes its token for the channel;
2. :meth:`Subscription.join` makes its queue in the channel layer and joins the channel's group
   (bounded by :data:`JOIN_TIMEOUT_SECONDS`), then counts it among the channel's subscribers;
3. :meth:`Subscription.next` hands the transport what is queued: messages (several at once
   when the process fell behind, so they are written together), the channel's close, or
   :class:`Overflow` once the subscriber fell more than ``server.max_backlog_bytes`` behind;
4. the transport writes, then calls :meth:`Subscription.written` (the delivery lag), and
   :meth:`Subscription.closing` with the close code it ends with;
5. :meth:`Subscription.leave` undoes 1 and 2, whatever happened (it is idempotent).

Refusals are :class:`Refused` with a :class:`~channels_api.events.RefusalReason`: counted in
``webchannel_websocket_refused_total`` here, answered by the transport (a refused WebSocket
handshake, an HTTP problem before an event stream starts). Messages written are counted by the
server as it writes them, so a message it drops (a closing socket, a reader too slow) is not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from . import metrics
from .asgi_types import Scope
from .auth import BEARER_SUBPROTOCOL_PREFIX, Grant, bearer_token, verify_grant
from .backlog import OVERFLOWED, Backlog
from .events import CloseCode, RefusalReason, refusal_detail
from .exceptions import InvalidChannelId, ScopeDenied, TokenError
from .names import channel_id_from_url, group_name

if TYPE_CHECKING:
    from .runtime import Runtime

logger = logging.getLogger(__name__)

JOIN_TIMEOUT_SECONDS = 2.0
"""Joining the channel's group must not hang a handshake when Redis does not answer."""
BATCH_EVENTS = 64
"""At most this many events queued for a subscriber are handed over at once."""

_REFUSAL_STATUS = {
    RefusalReason.INVALID_TOKEN: HTTPStatus.UNAUTHORIZED,
    RefusalReason.EXPIRED_TOKEN: HTTPStatus.UNAUTHORIZED,
    RefusalReason.WRONG_CHANNEL: HTTPStatus.FORBIDDEN,
    RefusalReason.INVALID_CHANNEL_ID: HTTPStatus.BAD_REQUEST,
    RefusalReason.INVALID_FRAMES: HTTPStatus.BAD_REQUEST,
    RefusalReason.MAX_CONNECTIONS: HTTPStatus.SERVICE_UNAVAILABLE,
    RefusalReason.LAYER_UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
}


class Refused(Exception):
    """A subscribe refused for ``reason``; ``detail`` names the reason and what it means, in
    words a client may read (the same for both transports)."""

    def __init__(self, reason: RefusalReason) -> None:
        self.reason = reason
        self.detail = refusal_detail(reason.value)
        super().__init__(self.detail)

    @property
    def status(self) -> HTTPStatus:
        """The HTTP status an event stream is refused with (a WebSocket handshake is always 403)."""
        return _REFUSAL_STATUS[self.reason]


class Overflow(Exception):
    """The subscriber fell more than ``server.max_backlog_bytes`` behind; ``dropped`` messages are lost."""

    def __init__(self, dropped: int) -> None:
        super().__init__(f"{dropped} messages dropped")
        self.dropped = dropped


class OpenSubscribers:
    """Subscriber sockets and event streams open in this process, capped by ``server.max_connections``."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def admit(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        metrics.users_connected.set(self.count)
        return True

    def release(self) -> None:
        self.count -= 1
        metrics.users_connected.set(self.count)


def token_from_scope(scope: Scope) -> str | None:
    """The token from ``Authorization: Bearer``, else, for browsers, from a
    ``webchannel.bearer.<token>`` subprotocol (kept out of URLs and logs), else from the
    ``access_token`` query parameter: the first source present decides, even if invalid."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            token = bearer_token(value.decode("latin-1"))
            if token:
                return token
    for protocol in scope.get("subprotocols", ()):
        if protocol.startswith(BEARER_SUBPROTOCOL_PREFIX):
            return protocol[len(BEARER_SUBPROTOCOL_PREFIX) :]
    values = query_values(scope, "access_token")
    return values[0] if values else None


def query_values(scope: Scope, name: str) -> list[str]:
    """Every value of query parameter ``name`` in the scope's query string (blank ones too)."""
    query = scope.get("query_string", b"")
    if not query:
        return []
    return parse_qs(query.decode("latin-1"), keep_blank_values=True).get(name, [])


class Subscription:
    """One subscriber of one channel, from admission to leaving (see the module docstring)."""

    __slots__ = (
        "_admitted",
        "_backlog",
        "_listening",
        "_runtime",
        "channel",
        "channel_id",
        "grant",
        "group",
    )

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._admitted = False
        self._listening = False
        self._backlog: Backlog | None = None
        self.channel_id = ""
        self.group = ""
        self.channel = ""
        """The subscriber's own channel in the layer (its queue), once joined."""
        self.grant: Grant | None = None

    @property
    def expires_at(self) -> float:
        """When the token that opened the subscription expires (Unix seconds): the subscription ends then."""
        assert self.grant is not None
        return float(self.grant.claims["exp"])

    def open(self, routed: str, raw_path: bytes | None, token: str | None) -> None:
        """Admit and authorize: ``routed`` is the channel id as the router decoded it, ``raw_path``
        the path as sent (to refuse ids whose percent-encoding is malformed). Raises :class:`Refused`."""
        config = self._runtime.config
        try:
            self.channel_id = channel_id_from_url(routed, raw_path)
            self.grant = verify_grant(token, config.secret_keys, config.keyring)
            self.grant.check(self.channel_id, "subscribe")
        except (InvalidChannelId, TokenError) as exc:
            raise self._refused(exc.refusal, str(exc)) from None
        except ScopeDenied as exc:  # every token may subscribe; a key's present scopes may not
            raise self._refused(RefusalReason.WRONG_CHANNEL, str(exc)) from None
        if not self._runtime.subscribers.admit():
            raise self._refused(
                RefusalReason.MAX_CONNECTIONS,
                "this server holds as many subscribers as it may; retry later or elsewhere",
            )
        self._admitted = True
        self.group = group_name(self.channel_id)

    def refuse(self, reason: RefusalReason, detail: str) -> Refused:
        """A refusal the transport decided on (e.g. a bad ``frames`` parameter), counted like the others."""
        return self._refused(reason, detail)

    @staticmethod
    def _refused(reason: RefusalReason, why: str) -> Refused:
        metrics.websocket_refused.labels(reason=reason.value).inc()
        logger.debug("subscribe refused: %s (%s)", reason.value, why)
        return Refused(reason)

    async def join(self) -> None:
        """Join the channel's group; from then on the subscriber receives its messages and counts
        among its subscribers. Raises :class:`Refused` (``layer_unavailable``) when the layer fails."""
        runtime = self._runtime
        layer = runtime.layer
        self.channel = await layer.new_channel()
        self._backlog = layer.backlog(self.channel)
        try:
            async with asyncio.timeout(JOIN_TIMEOUT_SECONDS):
                await layer.group_add(self.group, self.channel)
        except Exception as exc:  # the layer's own errors (Redis down, wedged): the client retries
            runtime.outage.failed("subscribe", exc)
            raise self._refused(RefusalReason.LAYER_UNAVAILABLE, "the channel layer is unavailable; retry") from None
        runtime.outage.succeeded()
        runtime.presence.joined(self.group)
        self._listening = True

    async def next(self, within: float | None = None) -> list[dict[str, Any]]:
        """The events queued for the subscriber, oldest first, waiting for one if none is; an
        empty list when ``within`` seconds pass first. Several messages come together only when they
        were queued already; any other event ends a batch. Raises :class:`Overflow`."""
        backlog = self._backlog
        assert backlog is not None
        if within is None:
            first = await backlog.get()
        else:
            try:
                async with asyncio.timeout(within):
                    first = await backlog.get()
            except TimeoutError:
                return []
        if first is OVERFLOWED:
            raise Overflow(backlog.dropped)
        if first["type"] != "relay.message":
            return [first]
        return [first, *backlog.take_while(_is_message, BATCH_EVENTS - 1)]

    def written(self, events: Sequence[Mapping[str, Any]]) -> None:
        """The transport wrote ``events`` (or handed them to the server): their delivery lag counts."""
        lag = self._runtime.delivery_lag
        for event in events:
            if event is not lag.last:
                lag.written(event)

    @staticmethod
    def closing(code: CloseCode) -> None:
        """The server ends the subscription with ``code`` (counted by code, the same for both transports)."""
        metrics.websocket_closed.labels(code=code.label).inc()

    def overflowed(self, overflow: Overflow) -> None:
        """The subscriber is cut off as too slow: what it lost counts as send errors."""
        metrics.message_send_errors.inc(overflow.dropped)
        logger.info("subscriber too slow: closing with %d, %d messages dropped", CloseCode.TOO_SLOW, overflow.dropped)
        self.closing(CloseCode.TOO_SLOW)

    def seconds_left(self) -> float:
        """Seconds until the token expires (0 when it has: the subscription ends at once)."""
        return max(0.0, self.expires_at - time.time())

    async def leave(self) -> None:
        """Leave the group, drop the queue, stop counting: whatever happened before (idempotent)."""
        runtime = self._runtime
        if self._listening:
            self._listening = False
            runtime.presence.left(self.group)
        if self._admitted:
            self._admitted = False
            runtime.subscribers.release()
        if not self.channel:
            return
        channel, self.channel = self.channel, ""
        layer = runtime.layer
        layer.forget_channel(channel)
        try:
            async with asyncio.timeout(JOIN_TIMEOUT_SECONDS):
                await layer.group_discard(self.group, channel)
        except Exception as exc:  # Redis gone: its subscription dies with the connection
            logger.debug("group_discard failed: %s", exc)


def _is_message(event: dict[str, Any]) -> bool:
    return event["type"] == "relay.message"
