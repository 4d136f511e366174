"""webchannel's Daphne, used by ``serve`` and ``runserver``: the stock server, plus

- the protocols of :mod:`.ws_protocol` and :mod:`.http_protocol`
  (empty frames, bounded unsent bytes per subscriber, early 413 for oversized bodies);
- a subscriber's frames go from the application straight to its protocol;
- no 24-hour cut-off: ``websocket_timeout`` is disabled;
- a graceful drain on SIGTERM/SIGINT: stop listening, close idle keep-alive HTTP
  connections, let every HTTP request already accepted finish (its response closes its
  connection), close subscriber sockets with 1012 (service restart) and end event streams,
  spread over ``server.drain_window`` so clients do not all reconnect at once, then stop once all of
  that is written, or at the end of the window plus a margin. Requests still unanswered then
  get 503, except those committed (the ``webchannel.request`` extension: a publish handing its
  message to the channel layer), whose answer is waited for, within the layer's bound, since a
  client retries a 503 and the message would arrive twice. A second signal stops at once,
  except under ``serve --workers``: there a process group's signal (Ctrl-C, systemd) and the
  supervisor's forwarded one are the same stop, so a worker drains once and ignores the
  repeats; the supervisor's SIGUSR1 stops it at once.

Relies on these internals (verified by :mod:`channels_api.fence`; ``INTERNALS`` below):

- Daphne ``daphne.server.Server`` (subclassed): ``run`` assigns ``ws_factory`` and
  ``http_factory`` (intercepted by properties here) and creates ``connections`` (read);
  ``create_application`` and ``kill_all_applications`` (replaced), ``handle_reply``,
  ``listen_success``, ``listen_error``, ``stop``; the ``application``, ``ping_interval`` and ``ping_timeout``
  its ``__init__`` sets. ``daphne.http_protocol.HTTPFactory`` and
  ``daphne.ws_protocol.WebSocketFactory``, whose ``protocol`` is replaced.
- Twisted ``twisted.internet.asyncioreactor.AsyncioSelectorReactor._asyncioEventloop``,
  the event loop that signal handlers are added to.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
import time
from functools import partial
from typing import Any

from daphne.http_protocol import HTTPFactory
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from twisted.internet import defer
from twisted.internet import reactor as _reactor

from ..asgi_types import Scope
from ..config import Config
from ..events import SEND_FRAMES, CloseCode
from ..logs import REQUEST
from ..publishing import PUBLISH_TIMEOUT_SECONDS
from ..runtime import runtime
from .http_protocol import RequestState, WebchannelHTTPFactory, WebchannelWebRequest
from .ws_protocol import WebchannelWebSocketProtocol

INTERNALS = (
    ("daphne", "daphne.server", "Server"),
    ("daphne", "daphne.server.Server", "ws_factory", "run"),
    ("daphne", "daphne.server.Server", "http_factory", "run"),
    ("daphne", "daphne.server.Server", "connections", "run"),
    ("daphne", "daphne.server.Server", "create_application"),
    ("daphne", "daphne.server.Server", "handle_reply"),
    ("daphne", "daphne.server.Server", "listen_success"),
    ("daphne", "daphne.server.Server", "listen_error"),
    ("daphne", "daphne.server.Server", "stop"),
    ("daphne", "daphne.server.Server", "kill_all_applications"),
    ("daphne", "daphne.server.Server", "application", "__init__"),
    ("daphne", "daphne.server.Server", "ping_interval", "__init__"),
    ("daphne", "daphne.server.Server", "ping_timeout", "__init__"),
    ("daphne", "daphne.http_protocol", "HTTPFactory"),
    ("daphne", "daphne.ws_protocol", "WebSocketFactory"),
    ("daphne", "daphne.ws_protocol.WebSocketFactory", "protocol"),
    ("twisted", "twisted.internet.asyncioreactor.AsyncioSelectorReactor", "_asyncioEventloop", "__init__"),
)

logger = logging.getLogger(__name__)
reactor: Any = _reactor  # the installed asyncio reactor; its interfaces are not typed as an object

DRAIN_MARGIN_SECONDS = 1.0
"""After the window, time left for close handshakes and requests before the process stops anyway."""
FLUSH_SECONDS = 0.2
"""At the end of the margin, time for the 503s of requests still unanswered to be written."""
COMMITTED_SECONDS = PUBLISH_TIMEOUT_SECONDS + 0.5
"""After the margin, how long committed requests may still take: the channel layer answers a
publish within its bound, and a drain ends backpressure waits at once."""
DRAIN_POLL_SECONDS = 0.05


GC_THRESHOLDS = (20_000, 10, 10)
"""Young collections every 50,000 allocations instead of 700, and full ones rarer.

Each subscriber keeps dozens of objects alive; with CPython's defaults a server holding
thousands of sockets spent a quarter of a connection storm, and half-second pauses in a
soak, in collections that found almost nothing to free.
"""


def tune_garbage_collector() -> None:
    """Exempt everything loaded at startup from collection, and collect less often."""
    gc.collect()
    gc.freeze()  # modules, settings, URL patterns: they live as long as the process
    gc.set_threshold(*GC_THRESHOLDS)


class Inbox:
    """A connection's ASGI events, waiting for the application.

    Daphne gives every connection an ``asyncio.Queue`` (three deques and an Event, about
    2.5 KiB); a subscriber receives a handful of events in its life.
    """

    __slots__ = ("_events", "_waiter")

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> dict[str, Any]:
        while not self._events:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._events.pop(0)


class WebchannelServer(Server):  # type: ignore[misc]
    """Daphne's ``Server`` with webchannel's protocols, limits and graceful drain."""

    def __init__(self, *args: Any, config: Config, supervised: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("websocket_timeout", -1)
        kwargs.setdefault("ping_interval", config.server.ping_interval)
        kwargs.setdefault("ping_timeout", config.server.ping_timeout)
        # Autobahn applies these to frames we send as well: room for the largest message.
        kwargs["websocket_max_message_size"] = kwargs["websocket_max_frame_size"] = config.channel.max_message_size
        kwargs["signal_handlers"] = False
        super().__init__(*args, **kwargs)
        self.server_config = config.server
        self.drain_window = config.server.drain_window
        self.max_backlog_bytes = config.server.max_backlog_bytes
        self.max_message_size = config.channel.max_message_size
        self.encodings = runtime().encodings
        """The encodings of the message relayed last, shared with the application's transports."""
        self.draining = False
        self._drain_started: asyncio.Future[None] | None = None
        self.supervised = supervised
        self.ports: list[Any] = []
        self.listen_failed = False

    # Server.run() builds its factories itself; these setters substitute webchannel's.
    @property
    def ws_factory(self) -> WebSocketFactory:
        return self._ws_factory

    @ws_factory.setter
    def ws_factory(self, factory: WebSocketFactory) -> None:
        factory.protocol = WebchannelWebSocketProtocol
        self._ws_factory = factory

    @property
    def http_factory(self) -> HTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        if not isinstance(factory, WebchannelHTTPFactory):
            factory = WebchannelHTTPFactory(self, self.server_config)
        self._http_factory = factory

    def run(self) -> None:
        # runserver's autoreloader runs the server in a thread, where signals cannot be handled.
        if threading.current_thread() is threading.main_thread():
            loop = reactor._asyncioEventloop
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.on_stop_signal, signum)
            if self.supervised:
                loop.add_signal_handler(signal.SIGUSR1, self.on_stop_now_signal)
        tune_garbage_collector()
        super().run()

    def create_application(self, protocol: Any, scope: Scope) -> Inbox | None:
        """Daphne's, with an :class:`Inbox` for the connection's events instead of an ``asyncio.Queue``,
        and a subscriber's ``send`` going straight to its protocol."""
        assert "application_instance" not in self.connections[protocol]
        inbox = Inbox()
        scope.setdefault("asgi", {"version": "3.0"})
        if isinstance(protocol, WebchannelWebSocketProtocol):
            send = protocol.send_from_application
            scope.setdefault("extensions", {})[SEND_FRAMES] = {}  # several frames in one write
        else:
            send = partial(self.handle_reply, protocol)
            state = protocol.request_state = RequestState(self.drain_started())
            scope.setdefault("extensions", {})[REQUEST] = state
        instance = self.application(scope=scope, receive=inbox.get, send=send)
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(instance)
        return inbox

    def kill_all_applications(self) -> Any:
        """Daphne's, for the connections that have an application: a request whose body never
        arrived has none, and Daphne's own would fail on it (silently) and cancel nothing."""
        pending = [
            instance
            for details in self.connections.values()
            if (instance := details.get("application_instance")) is not None and not instance.done()
        ]
        for instance in pending:
            instance.cancel()
        logger.info("Killed %i pending application instances", len(pending))
        waited = defer.Deferred.fromFuture(asyncio.gather(*pending))
        waited.addErrback(lambda _: None)
        return waited

    def drain_started(self) -> asyncio.Future[None]:
        """A future of this server's loop, done once the drain has begun."""
        if self._drain_started is None:
            self._drain_started = asyncio.get_running_loop().create_future()
            if self.draining:
                self._drain_started.set_result(None)
        return self._drain_started

    def listen_success(self, port: Any) -> None:
        self.ports.append(port)
        super().listen_success(port)

    def listen_error(self, failure: Any) -> None:
        self.listen_failed = True
        super().listen_error(failure)

    def on_stop_signal(self, signum: int) -> None:
        if self.draining and self.supervised:
            logger.info("%s again: already draining", signal.Signals(signum).name)
            return
        if self.draining:
            logger.warning("second %s: stopping now", signal.Signals(signum).name)
            self.stop()
            return
        self.draining = True
        logger.info("%s: draining (window %.1fs)", signal.Signals(signum).name, self.drain_window)
        self.drain()

    def on_stop_now_signal(self) -> None:
        logger.warning("SIGUSR1 from the supervisor: stopping now")
        self.stop()

    def drain(self) -> None:
        """Stop accepting; finish accepted requests, close every subscriber over the window, stop."""
        for port in self.ports:
            port.stopListening()
        if self._drain_started is not None and not self._drain_started.done():
            self._drain_started.set_result(None)  # publishes waiting on backpressure answer now
        self._http_factory.stop_keeping_alive()
        sockets = [p for p in self.connections if isinstance(p, WebSocketProtocol)]
        streams = [p for p in self.connections if isinstance(p, WebchannelWebRequest) and p.event_stream]
        subscribers = [*sockets, *streams]
        step = self.drain_window / len(subscribers) if subscribers else 0.0
        for i, protocol in enumerate(subscribers):
            reactor.callLater(i * step, _close_for_restart, protocol)
        self._stop_when_done(sockets, time.monotonic() + self.drain_window + DRAIN_MARGIN_SECONDS)

    def requests_in_flight(self) -> list[WebchannelWebRequest]:
        """HTTP requests accepted (request line read) and not yet answered."""
        return [
            p
            for p, details in self.connections.items()
            if isinstance(p, WebchannelWebRequest) and "disconnected" not in details and not p.refused
        ]

    def _stop_when_done(self, sockets: list[WebSocketProtocol], deadline: float) -> None:
        """Stop once every subscriber is closed, every request answered and every byte
        handed to the kernel (the reactor would drop unwritten ones), or at the deadline."""
        open_ = [p for p in sockets if p.state != WebSocketProtocol.STATE_CLOSED]
        requests = self.requests_in_flight()
        if not open_ and not requests and not reactor.getWriters():
            logger.info("drained")
            self.stop()
        elif time.monotonic() < deadline:
            reactor.callLater(DRAIN_POLL_SECONDS, self._stop_when_done, open_, deadline)
        else:
            committed = []
            for request in requests:
                state = request.request_state
                if state is not None and state.committed:
                    committed.append(request)
                    continue
                if state is not None:
                    state.answered = True  # its publish, should it get that far, is not sent
                request.answer_shutting_down()
            logger.info(
                "drained; %d sockets still open, %d requests answered 503 at stop, %d committed still being answered",
                len(open_),
                len(requests) - len(committed),
                len(committed),
            )
            self._stop_when_answered(committed, time.monotonic() + COMMITTED_SECONDS)

    def _stop_when_answered(self, committed: list[WebchannelWebRequest], deadline: float) -> None:
        """Stop once every committed request is answered (or at ``deadline``), and written."""
        in_flight = set(self.requests_in_flight())
        left = [request for request in committed if request in in_flight]
        if left and time.monotonic() < deadline:
            reactor.callLater(DRAIN_POLL_SECONDS, self._stop_when_answered, left, deadline)
            return
        if left:
            logger.warning("%d committed requests still unanswered at stop", len(left))
        self._stop_when_flushed(time.monotonic() + FLUSH_SECONDS)

    def _stop_when_flushed(self, deadline: float) -> None:
        if reactor.getWriters() and time.monotonic() < deadline:
            reactor.callLater(DRAIN_POLL_SECONDS, self._stop_when_flushed, deadline)
        else:
            self.stop()


def _close_for_restart(protocol: WebSocketProtocol | WebchannelWebRequest) -> None:
    if isinstance(protocol, WebchannelWebRequest):
        protocol.end_event_stream()
    elif protocol.state == WebSocketProtocol.STATE_OPEN:
        protocol.close_after_buffered(CloseCode.SERVICE_RESTART)
    elif protocol.state == WebSocketProtocol.STATE_CONNECTING:
        protocol.dropConnection(abort=True)
