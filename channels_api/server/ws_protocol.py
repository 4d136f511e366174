"""webchannel's WebSocket protocol for Daphne: what the ASGI interface cannot express.

It sends empty binary frames (Daphne drops a ``bytes=b""`` send), bounds what waits unsent
for a slow reader, writes each message framed once for all subscribers (straight to the
socket when nothing is queued), lets a close frame follow what is still buffered, counts
what it writes and what it drops, spreads keepalive pings, and keeps little per connection.

Relies on these internals (verified by :mod:`channels_api.fence`; ``INTERNALS`` below):

- Daphne ``daphne.ws_protocol.WebSocketProtocol`` (subclassed): ``handle_reply``,
  ``serverClose``, ``onConnect``, ``serverReject`` and ``onClose`` (overridden; the last three
  log through the server's ``log_action``), and the attributes its ``onConnect`` sets:
  ``server``, ``request``, ``clean_headers``, ``client_addr``, ``last_ping``.
- autobahn ``autobahn.websocket.protocol.WebSocketProtocol``: ``_connectionMade`` (replaced
  by a lean one), the per-connection ``_perMessageCompress`` and ``send_queue``,
  ``sendCloseFrame`` and the ``closeHandshakeTimeout`` it reads from the connection;
  ``TrafficStats``, ``autobahn.websocket.utf8validator.Utf8Validator``, and the
  ``_batched_timer`` of ``WebSocketServerFactory``.
- autobahn ``autobahn.websocket.protocol.WebSocketServerProtocol``: ``CONFIG_ATTRS`` (the
  options read from the factory) and the handshake leftovers freed once the socket is
  open: ``http_request_data``, ``http_status_line``, ``http_headers``, ``http_request_uri``,
  ``http_request_params``, ``websocket_protocols``, ``websocket_extensions`` (set in
  ``processHandshake``) and ``http_response_data`` (``succeedHandshake``).
- autobahn ``autobahn.websocket.protocol.WebSocketServerProtocol.failHandshake`` (overridden:
  a refused handshake is answered in problem+json), which sets ``wasNotCleanReason`` and
  calls ``dropConnection``; Daphne ``daphne.ws_protocol.WebSocketFactory.server_class`` (the
  server, whose ``log_action`` writes the access line of a handshake refused before Daphne
  saw it).
- autobahn ``autobahn.websocket.protocol.WebSocketProtocol.sendData`` (overridden: its writes,
  the handshake's answer among them, go straight to the socket through :mod:`.direct_write`
  when nothing is queued; with the factory's ``logOctets`` option, and for chopped or
  synchronous sends, autobahn's way).
"""

from __future__ import annotations

import logging
import random
from http import HTTPStatus
from typing import Any

from autobahn.websocket.protocol import TrafficStats
from autobahn.websocket.types import ConnectionDeny
from autobahn.websocket.utf8validator import Utf8Validator
from daphne.ws_protocol import WebSocketProtocol

from .. import metrics
from ..asgi_types import Message
from ..events import REFUSAL, SEND_FRAMES, CloseCode, close_reason, refusal_detail
from ..framing import BINARY, TEXT, frame_head
from ..logs import AccessNote, access_note, forwarded_client, trusted_networks
from ..problems import problem_message
from .direct_write import write_now, write_parts_now

INTERNALS = (
    ("daphne", "daphne.ws_protocol", "WebSocketProtocol"),
    ("daphne", "daphne.ws_protocol.WebSocketProtocol", "handle_reply"),
    ("daphne", "daphne.ws_protocol.WebSocketProtocol", "serverClose"),
    ("daphne", "daphne.ws_protocol.WebSocketProtocol", "onConnect"),
    ("daphne", "daphne.ws_protocol.WebSocketProtocol", "serverReject"),
    ("daphne", "daphne.ws_protocol.WebSocketProtocol", "onClose"),
    ("daphne", "daphne.ws_protocol.WebSocketProtocol", "server", "onConnect"),
    ("daphne", "daphne.ws_protocol.WebSocketProtocol", "request", "onConnect"),
    ("daphne", "daphne.ws_protocol.WebSocketProtocol", "clean_headers", "onConnect"),
    ("daphne", "daphne.ws_protocol.WebSocketProtocol", "client_addr", "onConnect"),
    ("daphne", "daphne.ws_protocol.WebSocketProtocol", "last_ping", "onConnect"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketServerProtocol", "CONFIG_ATTRS"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketProtocol", "_connectionMade"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketProtocol", "_perMessageCompress", "_connectionMade"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketProtocol", "send_queue", "_connectionMade"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketProtocol", "sendCloseFrame"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketProtocol", "closeHandshakeTimeout", "sendCloseFrame"),
    ("autobahn", "autobahn.websocket.protocol", "TrafficStats"),
    ("autobahn", "autobahn.websocket.utf8validator", "Utf8Validator"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketServerFactory", "_batched_timer", "__init__"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketServerProtocol", "http_request_data", "processHandshake"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketServerProtocol", "http_status_line", "processHandshake"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketServerProtocol", "http_headers", "processHandshake"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketServerProtocol", "http_request_uri", "processHandshake"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketServerProtocol", "http_request_params", "processHandshake"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketServerProtocol", "websocket_protocols", "processHandshake"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketServerProtocol", "websocket_extensions", "processHandshake"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketServerProtocol", "http_response_data", "succeedHandshake"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketProtocol", "sendData"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketServerProtocol", "failHandshake"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketServerProtocol", "wasNotCleanReason", "failHandshake"),
    ("autobahn", "autobahn.websocket.protocol.WebSocketProtocol", "dropConnection"),
    ("daphne", "daphne.ws_protocol.WebSocketFactory", "server_class", "__init__"),
)

logger = logging.getLogger(__name__)

_FACTORY_OPTIONS = frozenset(WebSocketProtocol.CONFIG_ATTRS)
_HANDSHAKE_LEFTOVERS = (
    "http_request_data",
    "http_response_data",
    "http_headers",
    "http_status_line",
    "http_request_uri",
    "http_request_params",
    "websocket_extensions",
    "websocket_protocols",
)
_deliveries = metrics.deliveries
ASCII_HEADERS = ("sec-websocket-protocol",)
"""Handshake headers Daphne decodes as ASCII (its own ``UnicodeDecodeError`` would be a 500)."""


class _Opened:
    """What Daphne still reads of the handshake request once the socket is open: its path."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


_NO_NOTE = AccessNote()
_TRAFFIC_STATS = TrafficStats()
"""One for all connections: autobahn counts into it, nobody reads it."""


class WebchannelWebSocketProtocol(WebSocketProtocol):  # type: ignore[misc]
    """A subscriber socket whose unsent bytes stay bounded, and that says why it was closed.

    Daphne's ASGI ``send`` never blocks, so frames for a reader that stopped reading would
    pile up in Twisted's write buffer without limit. This protocol registers itself as the
    transport's push producer: Twisted calls :meth:`pauseProducing` when its buffer passes
    its ``bufferSize`` (64 KiB) and :meth:`resumeProducing` once it drained. What is
    written while paused is counted. A frame that would take the count past
    ``server.max_backlog_bytes`` is not written: the socket is closed with 4008 (too slow)
    and nothing more is queued for it.

    Every close webchannel starts (4008 here, the application's 4003/4008/4013, the 1012 of
    a drain) is a close frame behind the bytes already buffered, so the peer reads the
    messages it was sent and then learns why the socket closed. The connection is aborted
    only if the peer has not answered within ``server.ping_timeout`` (autobahn's own close
    handshake timeout, one second, would cut a slow reader off before it read the close frame).
    """

    paused = False
    unsent_while_paused = 0
    too_slow = False
    """Closed with 4008: frames that still arrive for it count as send errors."""
    access_client: str | None = None
    """The client address a trusted proxy forwarded (``server.trusted_proxies``), for the access log."""
    refusal: str | None = None
    """Why the application refused the subscribe (a ``RefusalReason`` value), for the access log."""
    rejected = False

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

    def onConnect(self, request: Any) -> Any:
        for name in ASCII_HEADERS:
            value = request.headers.get(name)
            if value is not None and not value.isascii():
                raise ConnectionDeny(ConnectionDeny.BAD_REQUEST, f"the {name} header must be ASCII")
        answer = super().onConnect(request)
        networks = trusted_networks(self.server.server_config.trusted_proxies)
        if networks and self.client_addr:
            forwarded = [value.decode("latin-1") for name, value in self.clean_headers if name == b"x-forwarded-for"]
            self.access_client = forwarded_client(str(self.client_addr[0]), forwarded, networks)
        return answer

    def onOpen(self) -> None:
        self._logged(super().onOpen)  # Daphne logs the path from self.request
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

    async def send_from_application(self, message: Message) -> None:
        """The application's ASGI ``send`` for this socket.

        A message goes straight to :meth:`send_frame`, without Daphne's per-message
        coroutine and connection lookup; everything else (accept, close) takes Daphne's way.
        """
        kind = message.get("type")
        if kind == "websocket.send":
            self.send_frame(message)
        elif kind == SEND_FRAMES:
            self.send_frames(message["payloads"], message.get("text", False))
        else:
            await self.server.handle_reply(self, message)

    def handle_reply(self, message: Message) -> None:
        if message.get("type") == "websocket.send":
            self.send_frame(message)
        else:
            if message.get("type") == "websocket.close":
                self.refusal = message.get(REFUSAL)
            super().handle_reply(message)

    def serverReject(self) -> None:
        """Daphne's 403, logged as ``refused <reason>`` when the application gave one."""
        self.rejected = True
        self._logged(super().serverReject, AccessNote(self.access_client, self.refusal))

    def failHandshake(self, reason: str, code: int = HTTPStatus.BAD_REQUEST, responseHeaders: Any = None) -> None:
        """Refuse the handshake in problem+json, like every HTTP error: autobahn's own refusals
        (a malformed handshake), Daphne's 403 (the application refused the subscribe) and 500
        (the application crashed).

        autobahn would send its reason, holding what the client sent, as the status line, and
        no body. A 500's reason (the exception) is not sent at all. Daphne's 403 says only "Access
        denied": its ``detail`` is the application's :class:`RefusalReason` and what it means.
        """
        self.wasNotCleanReason = reason
        try:
            status = HTTPStatus(code)
        except ValueError:
            status = HTTPStatus.BAD_REQUEST
        if self.rejected:  # Daphne's 403 "Access denied": say why, as the access log does
            detail = refusal_detail(self.refusal)
        else:
            detail = reason if status < HTTPStatus.INTERNAL_SERVER_ERROR else "unexpected server error"
        self.sendData(problem_message(status, detail, responseHeaders or ()))
        if "request" not in self.__dict__:  # refused before Daphne (and its access line) saw it
            self._log_refused(status)
        self.dropConnection(abort=False)

    def _log_refused(self, status: HTTPStatus) -> None:
        """The access-log line of a handshake refused before it reached Daphne: ``refused <status>``."""
        peer = self.transport.getPeer()
        details = {
            "path": self.__dict__.get("http_request_uri") or "-",
            "client": f"{peer.host}:{peer.port}" if hasattr(peer, "port") else None,
        }
        self.factory.server_class.log_action("websocket", f"refused {status.value}", details)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if "request" not in self.__dict__:  # never reached Daphne: nothing of it to clean up or log
            return
        # A refused handshake was logged by serverReject; a subscribe refused after accept
        # (4013, the channel layer is unavailable) is logged as refused here.
        self._logged(
            super().onClose, AccessNote(self.access_client, self.refusal, self.rejected), wasClean, code, reason
        )

    def _logged(self, call: Any, note: AccessNote | None = None, *args: Any) -> None:
        """``call(*args)``, whose access-log line shows what Daphne does not pass (see :class:`AccessNote`)."""
        note = note or AccessNote(self.access_client)
        if note == _NO_NOTE:
            call(*args)
            return
        with access_note(note):
            call(*args)

    def send_frame(self, message: Message) -> None:
        """Write one ``websocket.send`` as one frame (also when empty, unlike Daphne)."""
        payload = message.get("bytes")
        if payload is None:  # a text message: under webchannel's consumer, only from another kind of sender
            self.send_frames([(message.get("text") or "").encode("utf-8")], text=True)
        else:
            self.send_frames([payload])

    def send_frames(self, payloads: list[bytes], text: bool = False) -> None:
        """Payloads as frames, in order, written with one system call: binary frames, or with
        ``text`` a text frame for each payload that is valid UTF-8 (the same bytes on the wire).

        Each counts as sent once written. A frame for a socket that is closing or closed is
        dropped (after a 4008 close it counts as a send error: the subscriber did not get it);
        one that would take what a stalled reader left unsent past ``server.max_backlog_bytes``
        closes the socket with 4008, and it and those after it are send errors.
        """
        if self.state != self.STATE_OPEN:
            if self.too_slow:
                metrics.message_send_errors.inc(len(payloads))
            return
        encodings = self.server.encodings
        if self._perMessageCompress is not None or self.send_queue:
            for payload in payloads:  # autobahn's general path
                binary = not text or encodings.text(payload) is None
                self.sendMessage(payload, isBinary=binary)
                _deliveries.sent += 1
                _deliveries.sent_bytes += len(payload)
            return
        was_paused, limit = self.paused, self.server.max_backlog_bytes
        parts: list[bytes] = []
        written = 0
        for payload in payloads:
            size = len(payload)
            if was_paused:
                if self.unsent_while_paused + size > limit:
                    break
                self.unsent_while_paused += size
            if len(payloads) == 1:  # the whole frame, framed once for every subscriber of the message
                parts.append((text and encodings.text_frame(payload)) or encodings.binary_frame(payload))
            else:
                parts.append(frame_head(size, TEXT if text and encodings.text(payload) is not None else BINARY))
                parts.append(payload)
            written += size
        sent = len(parts) if len(payloads) == 1 else len(parts) // 2
        if parts:
            if len(parts) == 1:
                write_now(self.transport, parts[0])
            else:
                write_parts_now(self.transport, parts)
            if self.paused and not was_paused:  # these frames paused the transport: they count
                self.unsent_while_paused += written
            _deliveries.sent += sent
            _deliveries.sent_bytes += written
        refused = len(payloads) - sent
        if refused:
            self._close_too_slow()
            if refused > 1:
                metrics.message_send_errors.inc(refused - 1)

    def _write(self, data: bytes) -> None:
        """Send now when nothing is waiting, else queue behind what is (Twisted's buffer).

        Twisted always buffers and waits for the next writable event, which costs two
        selector updates per write; a fan-out writes once to each of many sockets.
        """
        write_now(self.transport, data)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """autobahn's raw write (the handshake's answer, close and ping frames), sent at once
        when nothing is queued; autobahn's own traffic statistics are not kept."""
        if sync or chopsize or self.send_queue or self.logOctets:
            super().sendData(data, sync, chopsize)
        else:
            write_now(self.transport, data)

    def _close_too_slow(self) -> None:
        """Close with 4008; the frame that did not fit, and every later one, is a send error."""
        logger.info("subscriber %s too slow: closing with %d", self.client_addr, CloseCode.TOO_SLOW)
        metrics.websocket_closed.labels(code=CloseCode.TOO_SLOW.label).inc()
        metrics.message_send_errors.inc()
        self.too_slow = True
        self.close_after_buffered(CloseCode.TOO_SLOW)

    def serverClose(self, code: int | None = None) -> None:
        """The application's close (4000, 4003, 4008, 4013, ...): behind what is buffered too,
        with the code's reason phrase (Daphne's sends none)."""
        self.closeHandshakeTimeout = self.server.ping_timeout
        code = CloseCode.NORMAL if code is None else code
        self.sendClose(code=code, reason=close_reason(code))  # refuses codes an application may not send

    def close_after_buffered(self, code: CloseCode) -> None:
        """Queue a close frame, with its reason phrase, behind the unsent bytes; abort if the
        peer has not answered it within ``server.ping_timeout``.

        ``sendCloseFrame``, unlike ``sendClose``, may also send the standard 1012 (Autobahn
        limits applications to 1000 and 3000-4999).
        """
        self.closeHandshakeTimeout = self.server.ping_timeout
        self.sendCloseFrame(code=code, reasonUtf8=code.reason.encode())
