"""webchannel's HTTP request handling for Daphne, below Django.

:class:`WebchannelWebRequest` refuses an oversized body from its headers (or, when chunked,
as soon as it passes the limit) instead of letting Twisted spool it first, never parses
form bodies, and answers Daphne's and Twisted's own errors in problem+json.
An event stream's (``text/event-stream``) unsent bytes are bounded like a subscriber
socket's, a drain can end it, and it gets its access-log line however it ends.

:class:`WebchannelHTTPChannel` gives a client ``server.request_head_timeout`` seconds to send
a complete request head (request line and headers), counted from the connection's opening
and, on a keep-alive connection, from the first byte of each later request; a connection
idle between requests is closed after :data:`IDLE_TIMEOUT_SECONDS`.
:class:`WebchannelHTTPFactory` counts the open HTTP connections (not those upgraded to
WebSocket, nor event streams: ``server.max_connections`` bounds those) and holds them to
``server.max_http_connections``: at the cap a new connection closes the longest idle
keep-alive one to make room, or, when none is idle, is answered 503 and closed. A drain
closes the idle keep-alive ones and has the busy ones close after their response.

Relies on these internals (verified by :mod:`channels_api.fence`; ``INTERNALS`` below):

- Daphne ``daphne.http_protocol.WebRequest`` (subclassed): ``basic_error``, ``process`` and
  ``handle_reply`` (overridden; the last logs through the server's ``log_action``), and the
  ``_response_started`` its ``__init__`` sets;
  ``daphne.http_protocol.HTTPFactory`` (subclassed): ``buildProtocol``, ``log``.
- Daphne ``daphne.http_protocol.WebRequest``: ``finish`` and ``connectionLost``
  (overridden, for an event stream's access-log line), and the ``server``,
  ``client_addr`` and ``request_start`` its ``__init__`` and ``process`` set (``duration``
  reads the last). ``process`` hands an upgraded connection to the WebSocket protocol and
  sets the request's ``transport`` to None, which is how an upgrade is recognised.
- Twisted ``twisted.web.http.Request``: ``gotLength``, ``handleContentChunk`` and
  ``requestReceived`` (overridden), the ``parsePOSTFormSubmission`` argument of its
  ``__init__`` (kept in ``_parsePOSTFormSubmission``), ``requestHeaders``,
  ``responseHeaders``, ``channel``, ``client`` (the peer), ``transport``, ``code``,
  ``method``, ``uri``, ``sentLength`` and ``startedWriting``; for an event stream,
  ``registerProducer`` (its producer is paused through the channel's ``pauseProducing``
  while the transport's buffer is full) and ``finished``.
- Twisted ``twisted.web.http.HTTPChannel`` (subclassed): ``_command`` and ``_path`` (the
  request line, held until the body is complete, read to choose the body limit),
  ``_respondToBadRequestAndDisconnect`` and ``checkPersistence`` (overridden), ``getHost``
  (overridden: asked once per connection), ``connectionMade``, ``dataReceived``,
  ``lineReceived``, ``allHeadersReceived``, ``requestDone``, ``timeoutConnection`` and ``connectionLost``
  (overridden: the head timeout and the connection count), the ``timeOut`` of its
  ``TimeoutMixin`` (the idle timeout it restores after each request, kept in
  ``_savedTimeOut`` while a request is handled) and ``resetTimeout`` (overridden: bytes of
  a head do not extend its deadline), and the ``requests``, ``persistent`` and
  ``requestFactory`` of a connection.
- Twisted ``twisted.internet.tcp.Connection.loseWriteConnection``: a connection refused at
  the cap is half-closed after its 503, so the client reads the answer before the close.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from http import HTTPStatus
from typing import Any

from daphne.http_protocol import HTTPFactory, WebRequest
from twisted.internet import reactor as _reactor
from twisted.web import http

from .. import metrics
from ..asgi_types import Message
from ..config import ServerConfig
from ..events import SENT
from ..logs import AccessNote, access_note, forwarded_client, trusted_networks
from ..problems import PROBLEM_CONTENT_TYPE, problem_body, problem_message
from ..routes import OTHER_BODY_LIMIT, body_limit

INTERNALS = (
    ("daphne", "daphne.http_protocol", "WebRequest"),
    ("daphne", "daphne.http_protocol.WebRequest", "basic_error"),
    ("daphne", "daphne.http_protocol.WebRequest", "handle_reply"),
    ("daphne", "daphne.http_protocol.WebRequest", "process"),
    ("daphne", "daphne.http_protocol.WebRequest", "_response_started", "__init__"),
    ("daphne", "daphne.http_protocol", "HTTPFactory"),
    ("daphne", "daphne.http_protocol.HTTPFactory", "buildProtocol"),
    ("daphne", "daphne.http_protocol.HTTPFactory", "log"),
    ("twisted", "twisted.web.http.Request", "gotLength"),
    ("twisted", "twisted.web.http.Request", "handleContentChunk"),
    ("twisted", "twisted.web.http.Request", "requestReceived"),
    ("twisted", "twisted.web.http.Request", "_parsePOSTFormSubmission", "__init__"),
    ("twisted", "twisted.web.http.Request", "requestHeaders", "__init__"),
    ("twisted", "twisted.web.http.Request", "responseHeaders", "__init__"),
    ("twisted", "twisted.web.http.Request", "channel", "__init__"),
    ("twisted", "twisted.web.http.Request", "client", "__init__"),
    ("twisted", "twisted.web.http.Request", "startedWriting"),
    ("twisted", "twisted.web.http.Request", "registerProducer"),
    ("twisted", "twisted.web.http.Request", "finished"),
    ("twisted", "twisted.web.http.HTTPChannel", "pauseProducing"),
    ("twisted", "twisted.web.http.HTTPChannel", "_command", "lineReceived"),
    ("twisted", "twisted.web.http.HTTPChannel", "_path", "lineReceived"),
    ("twisted", "twisted.web.http.HTTPChannel", "_respondToBadRequestAndDisconnect"),
    ("twisted", "twisted.web.http.HTTPChannel", "checkPersistence"),
    ("twisted", "twisted.web.http.HTTPChannel", "getHost"),
    ("twisted", "twisted.web.http.HTTPChannel", "requests", "__init__"),
    ("twisted", "twisted.web.http.HTTPChannel", "persistent"),
    ("twisted", "twisted.web.http.HTTPChannel", "requestFactory"),
    ("daphne", "daphne.http_protocol.WebRequest", "finish"),
    ("daphne", "daphne.http_protocol.WebRequest", "connectionLost"),
    ("daphne", "daphne.http_protocol.WebRequest", "server", "__init__"),
    ("daphne", "daphne.http_protocol.WebRequest", "client_addr", "process"),
    ("daphne", "daphne.http_protocol.WebRequest", "request_start", "process"),
    ("daphne", "daphne.http_protocol.WebRequest", "duration"),
    ("daphne", "daphne.http_protocol.WebRequest", "transport", "process"),
    ("twisted", "twisted.web.http.Request", "transport", "__init__"),
    ("twisted", "twisted.web.http.Request", "code"),
    ("twisted", "twisted.web.http.Request", "method"),
    ("twisted", "twisted.web.http.Request", "uri"),
    ("twisted", "twisted.web.http.Request", "sentLength"),
    ("twisted", "twisted.web.http.HTTPChannel", "connectionMade"),
    ("twisted", "twisted.web.http.HTTPChannel", "dataReceived"),
    ("twisted", "twisted.web.http.HTTPChannel", "lineReceived"),
    ("twisted", "twisted.web.http.HTTPChannel", "allHeadersReceived"),
    ("twisted", "twisted.web.http.HTTPChannel", "requestDone"),
    ("twisted", "twisted.web.http.HTTPChannel", "timeoutConnection"),
    ("twisted", "twisted.web.http.HTTPChannel", "connectionLost"),
    ("twisted", "twisted.web.http.HTTPChannel", "timeOut"),
    ("twisted", "twisted.web.http.HTTPChannel", "_savedTimeOut"),
    ("twisted", "twisted.web.http.HTTPChannel", "resetTimeout"),
    ("twisted", "twisted.internet.tcp.Connection", "loseWriteConnection"),
)

reactor: Any = _reactor
logger = logging.getLogger(__name__)

LINGER_SECONDS = 2.0
"""How long a refused body (or the request of a connection refused at the cap) is still read,
and discarded, before the connection is cut."""
IDLE_TIMEOUT_SECONDS = 60.0
"""A keep-alive connection idle between requests is closed after this long; it is also the
longest silence allowed while a request body is uploading (Twisted's own default)."""
BUSY_RETRY_AFTER_SECONDS = 2
"""``Retry-After`` of the 503 answered to a connection over ``server.max_http_connections``."""


_deliveries = metrics.deliveries
_NOTHING_SENT = (0, 0)


class RequestState:
    """The ``webchannel.request`` extension of one HTTP request (a
    :class:`~channels_api.events.RequestState`): whether the application committed the request
    (the drain must not answer it 503), and the name of the key that authenticated it (for its
    access-log line)."""

    __slots__ = ("answered", "committed", "draining", "key_name")

    def __init__(self, draining: asyncio.Future[None]) -> None:
        self.draining = draining
        self.committed = False
        self.answered = False
        """Answered 503 by the stopping server: too late to commit."""
        self.key_name: str | None = None

    def commit(self) -> bool:
        if self.answered:
            return False
        self.committed = True
        return True


class WebchannelWebRequest(WebRequest):  # type: ignore[misc]
    """An HTTP request that never holds more body than the limit for its method and path."""

    refused = False
    body_received = 0
    event_stream = False
    """The response is a ``text/event-stream``: its unsent bytes are bounded like a subscriber socket's."""
    stream_logged = False
    paused = False
    unsent_while_paused = 0
    too_slow = False
    complete = False
    """The whole request (its body too) has been read."""
    access_client: str | None = None
    """The client address a trusted proxy forwarded (``server.trusted_proxies``), for the access log."""
    request_state: RequestState | None = None
    """The ``webchannel.request`` extension the server gave the application (``RequestState``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Twisted would parse form-encoded and multipart bodies (and answer a bare 400 when
        # that fails); a publish body is bytes to relay, whatever its Content-Type.
        super().__init__(*args, parsePOSTFormSubmission=False, **kwargs)

    def gotLength(self, length: int | None) -> None:
        limit = body_limit(_text(self.channel, "_command"), _text(self.channel, "_path"), self.server.max_message_size)
        self.body_limit = OTHER_BODY_LIMIT if limit is None else limit  # the standalone service's every path is its own
        if length is not None and length > self.body_limit:
            self._refuse_too_large()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return  # discarded
        self.body_received += len(data)
        if self.body_received > self.body_limit:
            self._refuse_too_large()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.refused:
            self.channel.transport.loseConnection()  # the refused body has been read to its end
        else:
            self.complete = True
            super().requestReceived(command, path, version)

    def process(self) -> Any:
        networks = trusted_networks(self.server.server_config.trusted_proxies)
        peer = getattr(self.client, "host", None)
        if networks and peer:
            forwarded = [v.decode("latin-1") for v in self.requestHeaders.getRawHeaders(b"x-forwarded-for", [])]
            self.access_client = forwarded_client(str(peer), forwarded, networks)
        channel = self.channel
        processed = super().process()
        if self.transport is None:  # Daphne handed the connection to the WebSocket protocol
            channel.factory.stop_counting(channel)
        return processed

    def handle_reply(self, message: Message) -> None:
        silent = False
        if self.event_stream and message["type"] == "http.response.body":
            if not self._may_write(message):
                return
            # The stream's line is written as it ends (see _log_stream), not by Daphne here.
            silent = not message.get("more_body", False)
        elif message["type"] == "http.response.start" and _is_event_stream(message):
            self._start_event_stream()
        key = self.request_state.key_name if self.request_state is not None else None
        if self.access_client is None and not silent and key is None:
            super().handle_reply(message)
        else:
            # The access log names the client a trusted proxy forwarded, and the key's name.
            with access_note(AccessNote(self.access_client, silent=silent, key=key)):
                super().handle_reply(message)
        if self.event_stream and message["type"] == "http.response.body":
            messages, size = message.get(SENT, _NOTHING_SENT)
            if messages:  # written (or queued behind what is): sent, as a subscriber socket counts frames
                _deliveries.sent += messages
                _deliveries.sent_bytes += size

    def _start_event_stream(self) -> None:
        """Watch the transport's buffer from now on, as a subscriber socket does, and stop
        counting the connection among the HTTP ones: a subscriber's count bounds it."""
        self.event_stream = True
        self.registerProducer(_StreamProducer(self), True)
        # The connection ends with the stream (an EventSource reconnects on a new one), so it
        # never returns to the HTTP connections uncounted.
        self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        self.channel.persistent = False
        self.channel.factory.stop_counting(self.channel)

    def finish(self) -> None:
        super().finish()
        if self.event_stream:
            self._log_stream()

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        if self.event_stream:
            self._log_stream()

    def _log_stream(self) -> None:
        """The access-log line of an event stream, once, as it ends: whether the application
        ended it (its channel closed, its reader fell behind), a drain did, or the client
        went away (Daphne logs a response only when the application completes it)."""
        if self.stream_logged:
            return
        self.stream_logged = True
        details = {
            "path": self.uri.decode("ascii", "replace"),
            "status": self.code,
            "method": self.method.decode("ascii", "replace"),
            "client": f"{self.client_addr[0]}:{self.client_addr[1]}" if self.client_addr else None,
            "time_taken": self.duration(),
            "size": self.sentLength,
        }
        key = self.request_state.key_name if self.request_state is not None else None
        with access_note(AccessNote(self.access_client, key=key)):
            self.server.log_action("http", "complete", details)

    def _may_write(self, message: Message) -> bool:
        """False, and the stream cut off, when ``message`` would take what a stalled reader
        left unsent past ``server.max_backlog_bytes``."""
        if self.too_slow:
            return False
        size = len(message.get("body", b""))
        if self.paused and self.unsent_while_paused + size > self.server.max_backlog_bytes:
            self.too_slow = True
            logger.info("event stream reader %s too slow: ending its stream", self.client_addr)
            metrics.message_send_errors.inc(max(1, message.get(SENT, _NOTHING_SENT)[0]))
            self.channel.transport.abortConnection()  # a reader that does not read would not read the end either
            return False
        if self.paused:
            self.unsent_while_paused += size
        return True

    def end_event_stream(self) -> None:
        """For a drain: end the stream (the connection closes behind it); EventSource reconnects."""
        if not self.finished and self.channel is not None:
            self.finish()

    def _refuse_too_large(self) -> None:
        """Answer 413 at once; then read and discard the rest for a moment, and close.

        The discarding ("lingering close", as nginx does) lets a client that is still
        sending read the 413 instead of a connection reset; nothing is kept.
        """
        self.refused = True
        # allHeadersReceived would otherwise answer "Expect: 100-continue" after the 413.
        self.requestHeaders.removeHeader(b"expect")
        detail = f"the body must be at most {self.body_limit} bytes"
        transport = self.channel.transport
        transport.write(problem_message(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, detail))
        reactor.callLater(LINGER_SECONDS, transport.abortConnection)

    def answer_shutting_down(self) -> None:
        """A 503 for a request the server stops before answering (the application's answer,
        should it still come, is ignored); nothing when a response has begun."""
        detail = "the server is shutting down; retry"
        if not self.complete:  # still uploading: Twisted has no request line to answer with yet
            self.refused = True
            self.channel.transport.write(problem_message(HTTPStatus.SERVICE_UNAVAILABLE, detail))
            self.channel.loseConnection()
        elif not self._response_started:
            self.basic_error(HTTPStatus.SERVICE_UNAVAILABLE, b"Service Unavailable", detail)

    def basic_error(self, status: int, status_text: bytes, body: str) -> None:
        """Daphne's own errors (bad header, bad path, the application's crash), as problem+json
        like every other error.

        Once a response has begun (an event stream whose application crashed) no error can be
        answered: the connection is closed instead, so the client sees the response cut short.
        """
        if self._response_started:
            if self.channel is not None:
                self.channel.loseConnection()
            return
        document = problem_body(HTTPStatus(status), body)
        self.handle_reply(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", PROBLEM_CONTENT_TYPE.encode())],
            }
        )
        self.handle_reply({"type": "http.response.body", "body": document})


class _StreamProducer:
    """The event stream's push producer: Twisted pauses it while the transport's buffer is full."""

    __slots__ = ("request",)

    def __init__(self, request: WebchannelWebRequest) -> None:
        self.request = request

    def pauseProducing(self) -> None:
        # Called on every write while the buffer is full, not only the first time.
        if not self.request.paused:
            self.request.paused = True
            self.request.unsent_while_paused = 0

    def resumeProducing(self) -> None:
        self.request.paused = False

    def stopProducing(self) -> None:
        self.request.paused = False


def _is_event_stream(message: Message) -> bool:
    return any(
        name.lower() == b"content-type" and value.startswith(b"text/event-stream")
        for name, value in message.get("headers", ())
    )


def _text(channel: Any, name: str) -> str:
    # HTTPChannel keeps the request line in these until the body is complete.
    value = getattr(channel, name, b"")
    return value.decode("latin-1") if isinstance(value, bytes) else ""


class Phase(enum.Enum):
    """Where a connection is between requests, for its timeouts and the connection cap."""

    HEAD = "head"
    """A request head is awaited or arriving: ``server.request_head_timeout`` runs, unmoved by its bytes."""
    REQUEST = "request"
    """Its body is arriving (Twisted's idle timeout) or it is being handled (no timeout)."""
    IDLE = "idle"
    """A keep-alive connection between requests: closed after :data:`IDLE_TIMEOUT_SECONDS`,
    or sooner to make room at ``server.max_http_connections``."""
    REFUSED = "refused"
    """Over the cap: answered 503; what the client sends is discarded until the close."""


class WebchannelHTTPChannel(http.HTTPChannel):  # type: ignore[misc]
    """Twisted's HTTP/1.1 channel, answering problem+json where it would hang up or say a bare 400,
    with a deadline for each request head and a place under the factory's connection cap.

    Responses keep Twisted's buffered write: sent at once (as subscriber frames are), a publish
    cost 5% less CPU, but with many publishers on one process some were answered much later
    than others (the benchmark's throughput p99 went from 8 to 13 ms)."""

    _host: Any = None
    factory: WebchannelHTTPFactory
    phase = Phase.HEAD

    def connectionMade(self) -> None:
        # Twisted starts its timer with this, from the connection's opening (its factory sets floats here too).
        self.timeOut = self.factory.head_timeout  # type: ignore[assignment]
        super().connectionMade()
        if not self.factory.admit(self):
            self._refuse_busy()

    def dataReceived(self, data: bytes) -> None:
        if self.phase is Phase.IDLE:  # the first byte of the next request
            self._begin_head()
        elif self.phase is Phase.REFUSED:
            return
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        # The next request's lines may also come from what was read with the previous one
        # (pipelined), without a dataReceived of their own.
        if self.phase is Phase.IDLE:
            self._begin_head()
        super().lineReceived(line)

    def _begin_head(self) -> None:
        self.factory.idle.pop(self, None)
        self.phase = Phase.HEAD
        # A new timer rather than the idle one moved sooner: Twisted finds a timer to move
        # sooner by a scan of every pending one, a cancel and a new timer cost a heap push.
        self.setTimeout(None)
        self.setTimeout(self.factory.head_timeout)

    def resetTimeout(self) -> None:
        # Twisted's timeout is an idle timeout, which a byte every few seconds would keep off
        # for ever: a head's deadline stays where it was set.
        if self.phase is not Phase.HEAD:
            super().resetTimeout()

    def allHeadersReceived(self) -> None:
        self.phase = Phase.REQUEST
        self.setTimeout(IDLE_TIMEOUT_SECONDS)  # while the body arrives; restored after the request
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        if self.persistent:
            self.phase = Phase.IDLE  # a pipelined request's bytes, replayed now, begin its head
            self.factory.became_idle(self)
            super().requestDone(request)
            return
        super().requestDone(request)  # closes once the response is written...
        self.setTimeout(IDLE_TIMEOUT_SECONDS)  # ...which a client that does not read would put off for ever

    def timeoutConnection(self) -> None:
        if self.phase is Phase.HEAD:
            metrics.http_connections_closed.labels(reason="request_head_timeout").inc()
            logger.debug("%s: request head not complete within %gs: closing", self.getPeer(), self.factory.head_timeout)
        super().timeoutConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.stop_counting(self)
        super().connectionLost(reason)

    def _refuse_busy(self) -> None:
        """503 at once, then close once the client has read it (or after :data:`LINGER_SECONDS`)."""
        self.phase = Phase.REFUSED
        self.setTimeout(None)
        metrics.http_connections_closed.labels(reason="max_http_connections").inc()
        transport: Any = self.transport
        detail = "this server holds as many HTTP connections as it may; retry later or elsewhere"
        retry = [("Retry-After", str(BUSY_RETRY_AFTER_SECONDS))]
        transport.write(problem_message(HTTPStatus.SERVICE_UNAVAILABLE, detail, retry))
        # A half close keeps reading: closing outright while the request is still arriving
        # would reset the connection, and the client could lose the 503 before reading it.
        transport.loseWriteConnection()
        reactor.callLater(LINGER_SECONDS, transport.abortConnection)

    def lineLengthExceeded(self, line: bytes) -> None:
        # A header or request line over 16 KiB (e.g. a 100 KB token): Twisted just drops the connection.
        self._answer_and_close(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "a header line is too long")

    def _respondToBadRequestAndDisconnect(self) -> None:
        self._answer_and_close(HTTPStatus.BAD_REQUEST, "malformed HTTP request")

    def getHost(self) -> Any:
        """The local address, asked of the socket once per connection, not once per request."""
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        """Twisted's, except that while the server drains every response closes its connection."""
        if self.factory.draining:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        return bool(super().checkPersistence(request, version))

    def _answer_and_close(self, status: HTTPStatus, detail: str) -> None:
        transport: Any = self.transport
        transport.write(problem_message(status, detail))
        self.loseConnection()


class WebchannelHTTPFactory(HTTPFactory):  # type: ignore[misc]
    """Daphne's HTTP factory, building webchannel's channels and requests, and holding the
    open HTTP connections to ``server.max_http_connections``."""

    draining = False

    def __init__(self, server: Any, limits: ServerConfig) -> None:
        super().__init__(server)
        self.max_open = limits.max_http_connections
        self.head_timeout = limits.request_head_timeout
        self.timeOut = IDLE_TIMEOUT_SECONDS  # each connection's idle timeout (Twisted's TimeoutMixin)
        self.open: set[WebchannelHTTPChannel] = set()
        """The counted connections: neither upgraded to WebSocket nor carrying an event stream."""
        self.idle: dict[WebchannelHTTPChannel, None] = {}
        """The counted keep-alive connections between requests, the longest idle first."""

    def protocol(self) -> WebchannelHTTPChannel:
        # Twisted wraps its channel in a proxy that only matters for HTTP/2 over TLS, which
        # Daphne does not negotiate here.
        return WebchannelHTTPChannel()

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = WebchannelWebRequest
        return protocol

    def admit(self, channel: WebchannelHTTPChannel) -> bool:
        """Count a new connection; at the cap, close the longest idle keep-alive connection to
        make room, and when none is idle refuse (False)."""
        if len(self.open) >= self.max_open:
            if not self.idle:
                return False
            oldest = next(iter(self.idle))
            self.stop_counting(oldest)
            metrics.http_connections_closed.labels(reason="evicted_idle").inc()
            oldest.loseConnection()
        self.open.add(channel)
        return True

    def became_idle(self, channel: WebchannelHTTPChannel) -> None:
        if channel in self.open:
            self.idle[channel] = None

    def stop_counting(self, channel: WebchannelHTTPChannel) -> None:
        """The connection closed, became a WebSocket or carries an event stream."""
        self.open.discard(channel)
        self.idle.pop(channel, None)

    def stop_keeping_alive(self) -> None:
        """For a drain: idle keep-alive connections close now, busy ones after their response.

        A connection with a request is left to finish; its response says ``Connection: close``.
        Upgraded connections and event streams are not among these (the drain closes them).
        """
        self.draining = True
        for channel in list(self.open):
            if not channel.requests:
                channel.loseConnection()
                continue
            channel.persistent = False
            for request in channel.requests:
                if not request.startedWriting:
                    request.responseHeaders.setRawHeaders(b"connection", [b"close"])

    def log(self, request: Any) -> None:
        """No Twisted access log: Daphne's action logger writes webchannel's (redacted) one."""
