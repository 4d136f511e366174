"""webchannel's WebSocket protocol for Daphne: what the ASGI interface cannot express.

It sends empty binary frames (Daphne drops a ``bytes=b""`` send), bounds what waits unsent
for a slow reader, writes each message framed once for all subscribers (straight to the
socket when nothing is queued), spreads keepalive pings, and keeps little per connection.
"""

from __future__ import annotations

import logging
import random
import struct
from typing import Any

from autobahn.websocket.protocol import TrafficStats
from autobahn.websocket.utf8validator import Utf8Validator
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import tcp

from .. import metrics
from ..events import CloseCode

logger = logging.getLogger(__name__)

_FACTORY_OPTIONS = frozenset(WebSocketProtocol.CONFIG_ATTRS)
_HANDSHAKE_LEFTOVERS = (
    "http_request_data",
    "http_response_data",
    "http_headers",
    "http_status_line",
    "http_request_uri",
    "http_request_params",
    "websocket_key",
    "websocket_extensions",
    "websocket_protocols",
)


class _Opened:
    """What Daphne still reads of the handshake request once the socket is open: its path."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


_TRAFFIC_STATS = TrafficStats()
"""One for all connections: autobahn counts into it, nobody reads it."""


class WebchannelWebSocketProtocol(WebSocketProtocol):  # type: ignore[misc]
    """A subscriber socket whose unsent bytes stay bounded.

    Daphne's ASGI ``send`` never blocks, so frames for a reader that stopped reading would
    pile up in Twisted's write buffer without limit. This protocol registers itself as the
    transport's push producer: Twisted calls :meth:`pauseProducing` when its buffer passes
    its ``bufferSize`` (64 KiB) and :meth:`resumeProducing` once it drained. What is
    written while paused is counted; past ``server.max_backlog_bytes`` the socket is closed
    with 4008 (too slow) and aborted if the peer does not answer within a second.
    """

    paused = False
    unsent_while_paused = 0

    # Autobahn's _connectionMade sets these on every connection; shared defaults cost nothing.
    _perMessageCompress = None
    trackedTimings = None
    send_queue: Any = ()  # only chopped or "sync" sends queue, and nothing here sends those
    triggered = False
    data = b""
    wasMaxFramePayloadSizeExceeded = wasMaxMessagePayloadSizeExceeded = False
    closedByMe = failedByMe = droppedByMe = wasClean = False
    wasNotCleanReason = None
    wasServerConnectionDropTimeout = wasOpenHandshakeTimeout = wasCloseHandshakeTimeout = False
    wasServingFlashSocketPolicyFile = False
    localCloseCode = localCloseReason = remoteCloseCode = remoteCloseReason = None
    openHandshakeTimeoutCall = closeHandshakeTimeoutCall = None
    autoPingTimeoutCall = autoPingPending = autoPingPendingCall = autoPingPendingSent = None
    autoPingPendingSeq = 0

    def __getattr__(self, name: str) -> Any:
        # Autobahn reads its options from the connection; they are the factory's.
        if name in _FACTORY_OPTIONS:
            return getattr(self.factory, name)
        raise AttributeError(name)

    def _connectionMade(self) -> None:
        """Autobahn's, without copying ~30 options onto each connection and pretty-printing
        them for a debug line (a third of a handshake's CPU), and with shared defaults."""
        self.trafficStats = _TRAFFIC_STATS
        self.state = self.STATE_CONNECTING
        self.send_state = self.SEND_STATE_GROUND
        self.utf8validator = Utf8Validator()
        if self.openHandshakeTimeout > 0:
            self.openHandshakeTimeoutCall = self.factory._batched_timer.call_later(
                self.openHandshakeTimeout, self.onOpenHandshakeTimeout
            )
        self.factory.countConnections += 1

    def connectionMade(self) -> None:
        super().connectionMade()
        # The HTTP channel that handed over this connection is still its producer.
        self.transport.unregisterProducer()
        self.transport.registerProducer(self, True)

    def onOpen(self) -> None:
        super().onOpen()  # Daphne logs the path from self.request
        self._forget_handshake()
        # Daphne pings a socket ping_interval after its last ping; subscribers that connected
        # together (a deploy, a reconnect wave) would all be pinged in the same tick, stalling
        # the server for every ping round. A random phase spreads them out.
        self.last_ping -= random.uniform(0, self.server.ping_interval)  # noqa: S311 (not security)

    def _forget_handshake(self) -> None:
        """Free what parsing the handshake left behind (about 3 KiB a socket, kept for life).

        The header list is the one in the application's scope: the subscriber consumer reads
        it only to authenticate, before accepting, so it is emptied here too.
        """
        headers = self.__dict__.pop("clean_headers", None)
        if headers is not None:
            headers.clear()
        for name in _HANDSHAKE_LEFTOVERS:
            self.__dict__.pop(name, None)
        self.__dict__["request"] = _Opened(self.__dict__["request"].path)

    def pauseProducing(self) -> None:
        # Twisted calls this on every write while its buffer is full, not only the first time.
        if not self.paused:
            self.paused = True
            self.unsent_while_paused = 0

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        self.paused = False

    def handle_reply(self, message: dict[str, Any]) -> None:
        if message.get("type") != "websocket.send":
            super().handle_reply(message)
            return
        if self.state != self.STATE_OPEN:
            return  # closing or closed: the disconnect event is on its way to the application
        payload = message.get("bytes")
        binary = payload is not None
        if payload is None:
            payload = (message.get("text") or "").encode("utf-8")
        if self._perMessageCompress is not None or self.send_queue:
            self.sendMessage(payload, isBinary=binary)  # autobahn's general path
        else:
            self._write(_frame(payload, binary))  # also when empty, unlike Daphne
        if self.paused:
            self.unsent_while_paused += len(payload)
            if self.unsent_while_paused > self.server.max_backlog_bytes:
                self._close_too_slow()

    def _write(self, data: bytes) -> None:
        """Send now when nothing is waiting, else queue behind what is (Twisted's buffer).

        Twisted always buffers and waits for the next writable event, which costs two
        selector updates per write; a fan-out writes once to each of many sockets.
        """
        transport = self.transport
        if (
            type(transport) is not tcp.Server
            or transport._tempDataLen
            or transport.offset != len(transport.dataBuffer)
            or not transport.connected
            or transport.disconnecting
        ):
            transport.write(data)
            return
        try:
            sent = transport.socket.send(data)
        except OSError:  # would block, or the peer is gone: Twisted's path handles both
            sent = 0
        if sent < len(data):
            transport.write(data[sent:] if sent else data)

    def _close_too_slow(self) -> None:
        logger.info("subscriber %s too slow: closing with %d", self.client_addr, CloseCode.TOO_SLOW)
        metrics.websocket_closed.labels(code=str(int(CloseCode.TOO_SLOW))).inc()
        # The close frame waits behind the stalled data; autobahn aborts the connection
        # when the close handshake times out (closeHandshakeTimeout, 1 s).
        self.sendCloseFrame(code=int(CloseCode.TOO_SLOW), reasonUtf8=b"too slow")


_last_frame: tuple[bytes, bool, bytes] = (b"", True, b"\x82\x00")


def _frame(payload: bytes, binary: bool) -> bytes:
    """The unmasked, final WebSocket frame for ``payload``.

    Every subscriber of a channel gets the same payload object in turn, so the last frame
    is kept: a fan-out frames (and copies) each message once, not once per subscriber.
    """
    global _last_frame
    last_payload, last_binary, frame = _last_frame
    if payload is last_payload and binary is last_binary:
        return frame
    size = len(payload)
    first = 0x82 if binary else 0x81
    if size < 126:
        head = bytes((first, size))
    elif size < 65536:
        head = struct.pack("!BBH", first, 126, size)
    else:
        head = struct.pack("!BBQ", first, 127, size)
    frame = head + payload
    _last_frame = (payload, binary, frame)
    return frame
