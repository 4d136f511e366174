"""The subscriber side: one WebSocket per subscriber, relaying a channel's messages unchanged."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from . import metrics, presence
from .auth import BEARER_SUBPROTOCOL_PREFIX, SUBPROTOCOL, authorize, bearer_token
from .delivery_lag import delivery_lag
from .events import (
    REFUSAL,
    SEND_FRAMES,
    CloseCode,
    RefusalReason,
    RelayClose,
    RelayMessage,
    RelayOverflow,
    relay_message,
)
from .exceptions import InvalidChannelId, TokenError
from .layers import layer_outage
from .names import channel_id_from_url, group_name

logger = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_SECONDS = 2.0
"""Joining the channel's group must not hang a handshake when Redis does not answer."""


def token_from_scope(scope: dict[str, Any]) -> str | None:
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
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("access_token")
    return values[0] if values else None


FRAMES_PARAMETER = "frames"
FRAME_KINDS = ("binary", "text")
"""``?frames=`` values: ``binary`` (the default) or ``text`` (valid UTF-8 payloads as text frames)."""


def frames_from_scope(scope: dict[str, Any]) -> str | None:
    """The requested frame kind, ``binary`` without the parameter; None for any other value."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    values = query.get(FRAMES_PARAMETER)
    if not values:
        return "binary"
    return values[0] if len(values) == 1 and values[0] in FRAME_KINDS else None


_last_text: tuple[bytes, str | None] = (b"", "")


def utf8_text(data: bytes) -> str | None:
    """``data`` decoded if it is valid UTF-8, else None; decoded once per message for all subscribers."""
    global _last_text
    last, text = _last_text
    if data is last:
        return text
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    _last_text = (data, text)
    return text


_open_sockets = 0
"""Subscriber sockets open in this process (``server.max_connections`` caps it)."""


def expire_at(claims: dict[str, Any], expired: Callable[[], None]) -> asyncio.TimerHandle:
    """Call ``expired`` on the running loop when the token whose ``claims`` these are reaches its
    ``exp`` (at once if it has, within the verification's leeway): a subscription lasts no longer
    than the token that opened it."""
    delay = max(0.0, float(claims["exp"]) - time.time())
    return asyncio.get_running_loop().call_later(delay, expired)


class SubscriberConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Relays every message published to a channel as one binary frame with exactly its bytes
    (with ``?frames=text``, a valid UTF-8 payload as a text frame: the same bytes).

    Refusals happen at the handshake, never after it: a bad channel id (also one that is
    not valid percent-encoded UTF-8 in the URL) or a missing, invalid, expired or
    other-channel token closes before accept, which Daphne answers with HTTP 403. After
    accept the server closes only with a :class:`CloseCode`, whose reason phrase the close
    frame carries: 4003 when the client sends data, 4008 when it falls behind, 4013 when the
    channel layer is unavailable, 4000 when the channel is closed. Every refusal, and a
    subscribe the layer could not take (4013 at once), is counted under its
    :class:`RefusalReason`, which its close message carries under :data:`~.events.REFUSAL`
    for the server's access log (``refused <reason>``).

    Channels' consumer loop starts a task per message and waits on the client and the
    layer together; here the client's events are read in ``__call__`` and the layer's
    messages by one relay task started after accept, so a message never reaches a socket
    that is not open, and a delivery costs no task. The handlers keep channels' shape.
    """

    group: str | None = None
    channel_name = ""
    closing = False
    relay: asyncio.Task[None] | None = None
    expiry: asyncio.TimerHandle | None = None
    """Closes the socket with 4005 when the token's ``exp`` passes..."""
    expiring: asyncio.Future[None] | None = None
    """...through this task."""
    listening = False
    """Counted among the channel's subscribers (:mod:`.presence`)."""
    text_frames = False
    """``?frames=text``: valid UTF-8 payloads go out as text frames."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.channel_layer = get_channel_layer()
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            await self._leave()  # also when the consumer crashed or was cancelled

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """Verify the token against the path, join the channel's group, accept, start relaying."""
        if _open_sockets >= settings.WEBCHANNEL.server.max_connections:
            await self._refuse(RefusalReason.MAX_CONNECTIONS)
            return
        try:
            routed = self.scope["url_route"]["kwargs"]["channel_id"]
            channel_id = channel_id_from_url(routed, self.scope.get("raw_path"))
            config = settings.WEBCHANNEL
            claims = authorize(
                token_from_scope(self.scope), channel_id, "subscribe", config.secret_keys, config.keyring
            )
        except (InvalidChannelId, TokenError) as exc:
            logger.debug("subscribe refused: %s", exc)
            await self._refuse(exc.refusal)
            return
        frames = frames_from_scope(self.scope)
        if frames is None:  # a typo would otherwise silently give binary frames
            await self._refuse(RefusalReason.INVALID_FRAMES)
            return
        if frames == "text":
            self.text_frames = True
            self.relay_message = self.relay_text_message  # type: ignore[method-assign]
        # Counted from here, before the first await, so concurrent handshakes cannot all
        # pass the max_connections check while group_add waits for Redis.
        self.group = group_name(channel_id)
        self._count_open(+1)
        self.channel_name = await self.channel_layer.new_channel()
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
                await self.channel_layer.group_add(self.group, self.channel_name)
        except Exception as exc:  # the layer's own errors (Redis down, wedged): tell the client to retry
            layer_outage.failed("subscribe", exc)
            metrics.websocket_refused.labels(reason=RefusalReason.LAYER_UNAVAILABLE.value).inc()
            await self._leave()
            await self.accept(self._subprotocol())
            await self._close(CloseCode.TRY_AGAIN_LATER, RefusalReason.LAYER_UNAVAILABLE)
            return
        layer_outage.succeeded()
        await self.accept(self._subprotocol())
        presence.joined(self.group)  # counted once it receives the channel's messages
        self.listening = True
        self.relay = asyncio.create_task(self._relay())
        self.expiry = expire_at(claims, self._token_expired)

    def _token_expired(self) -> None:
        self.expiry = None
        self.expiring = asyncio.ensure_future(self._close(CloseCode.TOKEN_EXPIRED))

    def _subprotocol(self) -> str | None:
        """``webchannel`` when the client offered it (a browser passing its token as a
        subprotocol must): never the token-bearing entry, which would echo the token."""
        return SUBPROTOCOL if SUBPROTOCOL in self.scope.get("subprotocols", ()) else None

    def _relay_source(
        self,
    ) -> tuple[Callable[[str], Awaitable[Any]], Callable[[str], list[dict[str, Any]]] | None]:
        """How the relay receives the next message, and takes those queued behind it when they
        can be written together: binary frames (text frames go one by one), on a server that can."""
        source = getattr(self.channel_layer, "relay_source", None)
        if source is None:  # another channel layer
            return self.channel_layer.receive, None
        receive, pending = source()
        if self.text_frames or SEND_FRAMES not in self.scope.get("extensions", {}):
            return receive, None
        return receive, pending

    async def _relay(self) -> None:
        """Hand each message of the channel to its handler, in order, until the socket goes.

        A subscriber that fell behind (the server was busy) has several messages queued: they
        are written together, one system call instead of one per message.
        """
        (receive, pending), channel = self._relay_source(), self.channel_name
        try:
            while True:
                event = await receive(channel)
                if event["type"] == "relay.message":  # the hot path, without handler lookup
                    more = pending(channel) if pending is not None else None
                    if more:
                        await self.relay_messages([event, *more])
                    else:
                        await self.relay_message(event)
                else:
                    await self.dispatch(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("relay failed; closing the subscriber")
            await self._close(CloseCode.INTERNAL_ERROR)

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """Subscriber sockets are receive-only: any data frame closes the connection."""
        metrics.websocket_messages_received.inc()
        await self._close(CloseCode.DATA_FROM_CLIENT)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Leave the group and stop."""
        raise StopConsumer()

    async def _leave(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        if self.relay is not None:
            self.relay.cancel()  # the layer forgets the channel when its receive is cancelled
            self.relay = None
        if self.group is None:
            return
        group, self.group = self.group, None
        self._count_open(-1)
        if self.listening:
            self.listening = False
            presence.left(group)
        self.channel_layer.forget_channel(self.channel_name)
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
                await self.channel_layer.group_discard(group, self.channel_name)
        except Exception as exc:  # Redis gone: its subscription dies with the connection
            logger.debug("group_discard failed: %s", exc)

    async def relay_message(self, event: RelayMessage) -> None:
        """Write one published message, byte for byte, as a binary frame.

        Counted as sent by the server's protocol once the frame is written (a socket that
        is closing drops it), not here. The delivery lag is observed once per message.
        """
        if not self.closing:
            await self.base_send({"type": "websocket.send", "bytes": event["data"]})
            if event is not delivery_lag.last:
                delivery_lag.written(event)

    async def relay_messages(self, events: list[dict[str, Any]]) -> None:
        """Several published messages, in order, as binary frames written at once."""
        if not self.closing:
            await self.base_send({"type": SEND_FRAMES, "payloads": [event["data"] for event in events]})
            for event in events:
                if event is not delivery_lag.last:
                    delivery_lag.written(event)

    async def relay_text_message(self, event: RelayMessage) -> None:
        """For ``?frames=text``: a valid UTF-8 payload as a text frame, any other as binary.

        The bytes on the wire are the published ones either way.
        """
        if not self.closing:
            text = utf8_text(event["data"])
            if text is None:
                await self.base_send({"type": "websocket.send", "bytes": event["data"]})
            else:
                await self.base_send({"type": "websocket.send", "text": text})
            if event is not delivery_lag.last:
                delivery_lag.written(event)

    async def relay_overflow(self, event: RelayOverflow) -> None:
        """The backlog passed its bound: close as too slow rather than skip messages silently."""
        metrics.message_send_errors.inc(event["dropped"])
        logger.info("subscriber too slow: closing with %d, %d messages dropped", CloseCode.TOO_SLOW, event["dropped"])
        await self._close(CloseCode.TOO_SLOW)

    async def relay_close(self, event: RelayClose) -> None:
        """The channel was closed: its last message (if any), then 4000; the client should not reconnect."""
        if "data" in event:
            await self.relay_message(relay_message(event["data"]))
        await self._close(CloseCode.CHANNEL_CLOSED)

    @staticmethod
    def _count_open(delta: int) -> None:
        global _open_sockets
        _open_sockets += delta
        metrics.users_connected.set(_open_sockets)

    async def _close(self, code: CloseCode, refusal: RefusalReason | None = None) -> None:
        """Close with ``code`` and its reason phrase; a ``refusal`` goes to the access log too."""
        if not self.closing:
            self.closing = True
            metrics.websocket_closed.labels(code=code.label).inc()
            message = {"type": "websocket.close", "code": int(code), "reason": code.reason}
            if refusal is not None:
                message[REFUSAL] = refusal.value
            await self.base_send(message)

    async def _refuse(self, reason: RefusalReason) -> None:
        """Close before accept (Daphne answers 403); the reason goes to the access log, not the client."""
        metrics.websocket_refused.labels(reason=reason.value).inc()
        await self.base_send({"type": "websocket.close", REFUSAL: reason.value})

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its per-message ``close_old_connections``: there is no database."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)
