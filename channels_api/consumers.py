"""The WebSocket transport: one socket per subscriber, relaying a channel's messages unchanged.

A thin adapter of :class:`~channels_api.subscription.Subscription` to channels' consumer: it
reads the token and the frame kind from the handshake, refuses or accepts, writes what the
subscription hands it as frames, and closes with a :class:`~channels_api.events.CloseCode`.

Relies on these internals of channels (declared in ``INTERNALS``, verified by the
``channels_api.E001`` system check): ``AsyncConsumer.__call__`` and ``dispatch`` are replaced
(see :class:`SubscriberConsumer`); ``base_send``, which ``__call__`` sets and through which
``AsyncConsumer.send`` (so ``AsyncWebsocketConsumer``'s ``accept`` and ``close``) sends, is set
here instead; ``channels.consumer.get_handler_name`` names a message's handler.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from . import metrics
from .asgi_types import Message, Receive, Scope, Send
from .auth import SUBPROTOCOL
from .events import REFUSAL, SEND_FRAMES, CloseCode, RefusalReason, RelayClose, RelayMessage
from .runtime import runtime
from .subscription import Overflow, Refused, Subscription, query_values, token_from_scope

INTERNALS = (
    ("channels", "channels.consumer.AsyncConsumer", "__call__"),
    ("channels", "channels.consumer.AsyncConsumer", "dispatch"),
    ("channels", "channels.consumer.AsyncConsumer", "base_send", "__call__"),
    ("channels", "channels.consumer.AsyncConsumer", "send"),
    ("channels", "channels.consumer", "get_handler_name"),
)

logger = logging.getLogger(__name__)

FRAMES_PARAMETER = "frames"
FRAME_KINDS = ("binary", "text")
"""``?frames=`` values: ``binary`` (the default) or ``text`` (valid UTF-8 payloads as text frames)."""


def frames_from_scope(scope: Scope) -> str | None:
    """The requested frame kind, ``binary`` without the parameter; None for any other value."""
    values = query_values(scope, FRAMES_PARAMETER)
    if not values:
        return "binary"
    return values[0] if len(values) == 1 and values[0] in FRAME_KINDS else None


class SubscriberConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Relays every message published to a channel as one binary frame with exactly its bytes
    (with ``?frames=text``, a valid UTF-8 payload as a text frame: the same bytes).

    Refusals happen at the handshake, never after it: a bad channel id, a missing, invalid,
    expired or other-channel token, a bad ``frames`` parameter or a full server closes before
    accept, which webchannel's server answers with HTTP 403 and a problem body naming the
    reason. After accept the server closes only with a :class:`CloseCode`, whose reason phrase
    the close frame carries: 4003 when the client sends data, 4005 when the token expires, 4008
    when it falls behind, 4013 when the channel layer is unavailable, 4000 when the channel is
    closed. A refusal's :class:`RefusalReason` travels in the close message under
    :data:`~.events.REFUSAL` for the server's access log (``refused <reason>``).

    Channels' consumer loop starts a task per message and waits on the client and the layer
    together; here the client's events are read in ``__call__`` and the subscription's by one
    relay task started after accept, so a message never reaches a socket that is not open, and
    a delivery costs no task. The handlers keep channels' shape.
    """

    subscription: Subscription | None = None
    relay: asyncio.Task[None] | None = None
    expiry: asyncio.TimerHandle | None = None
    """Closes the socket with 4005 when the token's ``exp`` passes..."""
    expiring: asyncio.Future[None] | None = None
    """...through this task."""
    closing = False
    text_frames = False
    """``?frames=text``: valid UTF-8 payloads go out as text frames."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            await self._leave()  # also when the consumer crashed or was cancelled

    async def websocket_connect(self, message: Message) -> None:
        """Open the subscription (admit, authorize, join), accept, start relaying."""
        state = runtime()
        state.serve()
        subscription = self.subscription = Subscription(state)
        try:
            subscription.open(
                self.scope["url_route"]["kwargs"]["channel_id"],
                self.scope.get("raw_path"),
                token_from_scope(self.scope),
            )
            frames = frames_from_scope(self.scope)
            if frames is None:  # a typo would otherwise silently give binary frames
                raise subscription.refuse(RefusalReason.INVALID_FRAMES, "frames must be binary or text")
        except Refused as refused:
            await self.base_send({"type": "websocket.close", REFUSAL: refused.reason.value})
            return
        self.text_frames = frames == "text"
        try:
            await subscription.join()
        except Refused as refused:  # accepted, then closed at once: the client retries
            await self.accept(self._subprotocol())
            await self._close(CloseCode.TRY_AGAIN_LATER, refused.reason)
            return
        await self.accept(self._subprotocol())
        self.relay = asyncio.create_task(self._relay(subscription))
        self.expiry = asyncio.get_running_loop().call_later(subscription.seconds_left(), self._token_expired)

    def _subprotocol(self) -> str | None:
        """``webchannel`` when the client offered it (a browser passing its token as a
        subprotocol must): never the token-bearing entry, which would echo the token."""
        return SUBPROTOCOL if SUBPROTOCOL in self.scope.get("subprotocols", ()) else None

    def _token_expired(self) -> None:
        self.expiry = None
        self.expiring = asyncio.ensure_future(self._close(CloseCode.TOKEN_EXPIRED))

    async def _relay(self, subscription: Subscription) -> None:
        """Write what the subscription hands over, in order, until the socket goes.

        A subscriber that fell behind (the server was busy) has several messages queued: they
        are written together, one system call instead of one per message, on a server that can
        (webchannel's, which also frames each message once for all its subscribers).
        """
        try:
            while True:
                events = await subscription.next()
                if events[0]["type"] == "relay.message":
                    await self.relay_messages(events)
                else:
                    await self.dispatch(events[0])
        except Overflow as overflow:
            subscription.overflowed(overflow)
            await self._close(CloseCode.TOO_SLOW, counted=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("relay failed; closing the subscriber")
            await self._close(CloseCode.INTERNAL_ERROR)

    async def websocket_receive(self, message: Message) -> None:
        """Subscriber sockets are receive-only: any data frame closes the connection."""
        metrics.websocket_messages_received.inc()
        await self._close(CloseCode.DATA_FROM_CLIENT)

    async def websocket_disconnect(self, message: Message) -> None:
        """Leave the group and stop."""
        raise StopConsumer()

    async def _leave(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        if self.relay is not None:
            self.relay.cancel()
            self.relay = None
        if self.subscription is not None:
            subscription, self.subscription = self.subscription, None
            await subscription.leave()

    async def relay_message(self, event: RelayMessage) -> None:
        """Write one published message, byte for byte (see :meth:`relay_messages`)."""
        await self.relay_messages([event])

    async def relay_messages(self, events: Sequence[Mapping[str, Any]]) -> None:
        """Write published messages, in order, byte for byte: binary frames (with
        ``?frames=text``, a text frame for each that is valid UTF-8). webchannel's server takes
        them in one ASGI message (:data:`~.events.SEND_FRAMES`) and counts each as sent once
        written; under any other server each goes in a ``websocket.send`` of its own."""
        if self.closing:
            return
        payloads = [event["data"] for event in events]
        if SEND_FRAMES in self.scope.get("extensions", {}):
            await self.base_send({"type": SEND_FRAMES, "payloads": payloads, "text": self.text_frames})
        else:
            encodings = runtime().encodings
            for data in payloads:
                text = encodings.text(data) if self.text_frames else None
                await self.base_send({"type": "websocket.send", "bytes": data} if text is None else _text_message(text))
        if self.subscription is not None:
            self.subscription.written(events)

    async def relay_close(self, event: RelayClose) -> None:
        """The channel was closed: its last message (if any), then 4000; the client should not reconnect."""
        if "data" in event:
            await self.relay_message({"type": "relay.message", "data": event["data"]})
        await self._close(CloseCode.CHANNEL_CLOSED)

    async def _close(self, code: CloseCode, refusal: RefusalReason | None = None, *, counted: bool = False) -> None:
        """Close with ``code`` and its reason phrase; a ``refusal`` goes to the access log too."""
        if self.closing:
            return
        self.closing = True
        if not counted:
            Subscription.closing(code)
        message: dict[str, Any] = {"type": "websocket.close", "code": int(code), "reason": code.reason}
        if refusal is not None:
            message[REFUSAL] = refusal.value
        await self.base_send(message)

    async def dispatch(self, message: Message) -> None:
        """Channels' dispatch without its per-message ``close_old_connections``: there is no database."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)


def _text_message(text: str) -> dict[str, Any]:
    return {"type": "websocket.send", "text": text}
