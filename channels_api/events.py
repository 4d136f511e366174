"""What travels between the views, the channel layer and the consumer; how sockets close or are refused.

The values of :class:`CloseCode` and :class:`RefusalReason` are metric label values
(``webchannel_websocket_closed_total{code}``, ``webchannel_websocket_refused_total{reason}``),
documented in docs/reference/close-codes.md: members may be renamed, values never.
"""

from __future__ import annotations

import asyncio
from enum import IntEnum, StrEnum
from typing import Literal, NotRequired, Protocol, TypedDict


class RelayMessage(TypedDict):
    """One published message, on its way to every subscriber of a channel."""

    type: Literal["relay.message"]
    data: bytes
    published_at: NotRequired[float]
    """When the publish was accepted (``time.time()``, comparable across processes), for
    ``webchannel_delivery_lag_seconds``; absent from events of versions that did not send it."""


SEND_FRAMES = "webchannel.send_frames"
"""An ASGI extension of webchannel's own server: the message ``{"type": SEND_FRAMES, "payloads":
[...], "text": False}`` writes payloads to a subscriber's socket as frames, with one system call:
binary frames, or with ``"text": True`` a text frame for each payload that is valid UTF-8. The
server frames each message once for all the subscribers it is written to. It names the extension
in the scope's ``extensions``; under any other server each message is sent on its own."""


class RequestState(Protocol):
    """What the ``webchannel.request`` extension of webchannel's server holds for one HTTP request
    (see :data:`channels_api.logs.REQUEST`).

    A view about to hand a message to the channel layer (a publish, a channel's last message)
    commits its request first: a draining server then never answers it 503 when its deadline
    comes (a client retries every 503: the message would arrive twice), and waits for its
    answer instead.
    """

    key_name: str | None
    """The API key (name) that authenticated the request, for its access-log line."""

    @property
    def draining(self) -> asyncio.Future[None]:
        """Done once the server has begun to stop: waits that only pace the client (backpressure) end."""
        ...

    def commit(self) -> bool:
        """The request is about to have its effect: never answer it 503 from now on. False if the
        server stopping has already answered it 503: then the request must not have its effect."""
        ...


SENT = "webchannel.sent"
"""A key of webchannel's own in the ``http.response.body`` messages of an event stream: the
messages and payload bytes the body carries, ``(messages, bytes)``. webchannel's server counts
them as sent once it has written the body (as it counts WebSocket frames); others ignore it."""


REFUSAL = "webchannel.refusal"
"""A key of webchannel's own in a ``websocket.close`` message: the :class:`RefusalReason` value of
a refused subscribe, for the server's access log (``refused <reason>``), apart from the close
frame's ``reason``, which the client reads. Other servers ignore it."""


class RelayOverflow(TypedDict):
    """A subscriber's backlog passed ``server.max_backlog_bytes``; ``dropped`` messages were discarded."""

    type: Literal["relay.overflow"]
    dropped: int


def relay_message(data: bytes, published_at: float | None = None) -> RelayMessage:
    if published_at is None:
        return {"type": "relay.message", "data": data}
    return {"type": "relay.message", "data": data, "published_at": published_at}


def relay_overflow(dropped: int) -> RelayOverflow:
    return {"type": "relay.overflow", "dropped": dropped}


class RelayClose(TypedDict):
    """The channel was closed (``DELETE``): every subscriber, of every transport, writes ``data``
    (if present) as its last message, then closes (WebSockets with
    :attr:`CloseCode.CHANNEL_CLOSED`; an event stream ends)."""

    type: Literal["relay.close"]
    data: NotRequired[bytes]


def relay_close(data: bytes | None = None) -> RelayClose:
    if data is None:
        return {"type": "relay.close"}
    return {"type": "relay.close", "data": data}


MESSAGE_OVERHEAD_BYTES = 160
"""What a queued message costs beyond its payload (dict, bytes object, deque slot), roughly."""


class CloseCode(IntEnum):
    """WebSocket close codes webchannel sends, documented in docs/reference/close-codes.md.

    Under Daphne an application may only close with 1000 or 3000-4999, so application
    closes use 4xxx equivalents of the standard codes (4000 + the standard's last digits);
    1012 is sent by webchannel's own server on SIGTERM, below the application.
    """

    NORMAL = 1000
    CHANNEL_CLOSED = 4000
    """The channel was closed by its owner (``DELETE``): do not reconnect."""
    SERVICE_RESTART = 1012
    """The server is shutting down or restarting: reconnect (with backoff)."""
    DATA_FROM_CLIENT = 4003
    """The client sent a data frame; subscriber sockets are receive-only (cf. 1003)."""
    TOKEN_EXPIRED = 4005
    """The subscriber's token reached its ``exp``: fetch a fresh token and reconnect."""
    TOO_SLOW = 4008
    """The subscriber fell more than ``server.max_backlog_bytes`` behind (cf. 1008)."""
    INTERNAL_ERROR = 4011
    """Relaying to this subscriber failed unexpectedly (cf. 1011); logged with its traceback."""
    TRY_AGAIN_LATER = 4013
    """The channel layer (Redis) is unavailable: reconnect with backoff (cf. 1013)."""

    @property
    def label(self) -> str:
        """The ``code`` label of ``webchannel_websocket_closed_total``: the number itself."""
        return str(self.value)

    @property
    def reason(self) -> str:
        """The reason phrase the close frame carries (the close-code table of docs/reference/close-codes.md)."""
        return _CLOSE_REASONS[self]


_CLOSE_REASONS = {
    CloseCode.NORMAL: "",
    CloseCode.CHANNEL_CLOSED: "channel closed",
    CloseCode.SERVICE_RESTART: "server restarting",
    CloseCode.DATA_FROM_CLIENT: "data from client",
    CloseCode.TOKEN_EXPIRED: "token expired",
    CloseCode.TOO_SLOW: "too slow",
    CloseCode.INTERNAL_ERROR: "internal error",
    CloseCode.TRY_AGAIN_LATER: "try again later",
}


def close_reason(code: int) -> str | None:
    """The reason phrase of ``code`` if it is one of :class:`CloseCode`, else None."""
    try:
        return CloseCode(code).reason or None
    except ValueError:
        return None


class RefusalReason(StrEnum):
    """Why a subscribe was refused; the value is the ``reason`` label of ``webchannel_websocket_refused_total``."""

    INVALID_TOKEN = "invalid_token"  # noqa: S105 (a label, not a secret)
    """No token, or one that is malformed, wrongly signed or not yet valid."""
    EXPIRED_TOKEN = "expired_token"  # noqa: S105 (a label, not a secret)
    """A correctly signed token past its expiry."""
    WRONG_CHANNEL = "wrong_channel"
    """A valid token for another channel."""
    INVALID_CHANNEL_ID = "invalid_channel_id"
    """The id in the URL breaks the channel-id rules or is not valid percent-encoded UTF-8."""
    INVALID_FRAMES = "invalid_frames"
    """The subscribe URL's ``frames`` parameter is neither ``binary`` nor ``text``."""
    MAX_CONNECTIONS = "max_connections"
    """The process already holds ``server.max_connections`` subscriber sockets."""
    LAYER_UNAVAILABLE = "layer_unavailable"
    """The channel layer could not add the subscriber (accepted, then closed at once with 4013)."""


REFUSAL_MEANINGS: dict[str, str] = {
    RefusalReason.INVALID_TOKEN: "the token is missing, malformed, wrongly signed or not yet valid",
    RefusalReason.EXPIRED_TOKEN: "the token has expired; fetch a fresh one",
    RefusalReason.WRONG_CHANNEL: "the token is for another channel",
    RefusalReason.INVALID_CHANNEL_ID: (
        "the channel id in the URL breaks the rules (1-128 characters, no /, whitespace or control "
        "characters, percent-encoded UTF-8)"
    ),
    RefusalReason.INVALID_FRAMES: "the frames parameter must be binary or text",
    RefusalReason.MAX_CONNECTIONS: "this server holds as many subscribers as it may; retry later or elsewhere",
    RefusalReason.LAYER_UNAVAILABLE: "the channel layer is unavailable; retry",
}
"""What each refusal means for the client, after the reason the access log and the
``webchannel_websocket_refused_total{reason}`` label name."""


def refusal_detail(reason: str | None) -> str:
    """The ``detail`` of a refused subscribe: ``"<reason>: <what it means>"``, the reason being the
    one the access log and ``webchannel_websocket_refused_total`` name (the same for both transports)."""
    if reason is None:  # closed before accept without a reason, or not accepted in time
        return "the subscribe was refused"
    return f"{reason}: {REFUSAL_MEANINGS.get(reason, 'the subscribe was refused')}"
