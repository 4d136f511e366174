"""Prometheus metrics, declared once. HTTP responses by view and status come from django-prometheus.

Under ``serve --workers N`` the supervisor gives every worker one fresh directory in
``PROMETHEUS_MULTIPROC_DIR``: prometheus_client then keeps each worker's values in files there
(its multiprocess mode, which it chooses when imported), and a scrape of any worker reads them
all, so counters are summed over workers, past ones included, and never go backwards. The
directory's upkeep (dead workers' values archived, the directory removed by the last process
out) is :mod:`channels_api.metric_files`.
"""

import contextlib
import os
from collections.abc import Iterator

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from .metric_files import MetricsDirectory, scraping

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROCESS = MULTIPROCESS_DIR_VARIABLE in os.environ
"""Decided as prometheus_client decides it when imported: values in files shared by workers."""
FLUSH_SECONDS = 0.5
"""How often a worker adds its delivery counts to the shared files (and how stale a scrape may be)."""

# The *_created series double the scrape for no use here.
disable_created_metrics()

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
"""The methods a ``method`` label may name; any other is :data:`OTHER_METHOD`."""
OTHER_METHOD = "other"
"""The ``method`` label of a request whose method is not one of :data:`HTTP_METHODS`: a client
may send any token as a method, and each distinct label value would be a series kept for ever."""


def method_label(method: str | None) -> str:
    """The ``method`` label for a request's method: itself if standard, else ``other``."""
    return method if method in HTTP_METHODS else OTHER_METHOD


messages_published = Counter("webchannel_messages_published", "Messages accepted by POST /webchannel/v1/channels/{id}.")
messages_published_bytes = Counter("webchannel_messages_published_bytes", "Payload bytes of accepted messages.")


class Deliveries:
    """Per-delivery counts as plain integers, read when /metrics is scraped.

    The server's WebSocket protocol counts a frame once it is written, so one dropped for a
    closing socket is not counted. A fan-out counts once per subscriber per message; a ``Counter.inc`` takes a lock each
    time. Everything that touches these runs on the event loop, so no lock is needed.

    Under workers the integers stay the hot path: :meth:`flush` adds what they grew by to
    shared counters, every :data:`FLUSH_SECONDS`, on each scrape and when the worker stops.
    """

    def __init__(self) -> None:
        self.sent = 0
        self.sent_bytes = 0
        self._flushed = (0, 0)
        self._shared: tuple[Counter, Counter] | None = None

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("webchannel_messages_sent", "Frames written to subscriber sockets.", self.sent)
        yield CounterMetricFamily(
            "webchannel_messages_sent_bytes", "Payload bytes written to subscribers.", self.sent_bytes
        )

    def share(self) -> None:
        """Count into multiprocess counters (by :meth:`flush`) instead of being a collector."""
        self._shared = (
            Counter("webchannel_messages_sent", "Frames written to subscriber sockets."),
            Counter("webchannel_messages_sent_bytes", "Payload bytes written to subscribers."),
        )

    def flush(self) -> None:
        """Add the counts since the last flush to the shared counters (nothing in one process)."""
        if self._shared is None:
            return
        sent, sent_bytes = self.sent, self.sent_bytes
        flushed_sent, flushed_bytes = self._flushed
        if sent != flushed_sent:
            self._shared[0].inc(sent - flushed_sent)
        if sent_bytes != flushed_bytes:
            self._shared[1].inc(sent_bytes - flushed_bytes)
        self._flushed = (sent, sent_bytes)


deliveries = Deliveries()
if MULTIPROCESS:
    deliveries.share()
else:
    REGISTRY.register(deliveries)  # type: ignore[arg-type]
message_send_errors = Counter(
    "webchannel_message_send_errors",
    "Messages a subscriber closed with 4008 did not get: those its backlog discarded, "
    "the frame that did not fit its unsent bytes and every later one.",
)
users_connected = Gauge(
    "webchannel_users_connected",
    "Open subscriber WebSockets (under workers: of all live workers).",
    multiprocess_mode="livesum",
)
websocket_messages_received = Counter(
    "webchannel_websocket_messages_received", "Data frames received from subscribers (each closes the socket)."
)
channels_created = Counter("webchannel_channels_created", "Tokens issued by POST /webchannel/v1/channels.")
api_requests = Counter(
    "webchannel_api_requests",
    "Requests an API key authenticated and allowed, by the key's name (api_keys for every key of "
    "channel.api_keys, so the label values are bounded by the configuration) and action.",
    ["key", "action"],
)
publishes_rate_limited = Counter(
    "webchannel_publishes_rate_limited",
    "Publishes refused (429) because the key that authenticated them, or minted their token, had "
    "used up its max_publish_rate, by the key's name (bounded by the configuration).",
    ["key"],
)
websocket_refused = Counter("webchannel_websocket_refused", "Subscribe handshakes refused, by reason.", ["reason"])
websocket_closed = Counter(
    "webchannel_websocket_closed", "Subscriber sockets closed by the server, by close code.", ["code"]
)
http_connections_closed = Counter(
    "webchannel_http_connections_closed",
    "HTTP connections the server closed to protect itself, by reason: request_head_timeout (the "
    "request head was not complete in time), evicted_idle (an idle keep-alive connection closed to "
    "make room at server.max_http_connections), max_http_connections (a new connection answered 503).",
    ["reason"],
)
delivery_lag = Histogram(
    "webchannel_delivery_lag_seconds",
    "From a publish being accepted to the last local subscriber's frame being written; once per message "
    "and process (wall clock: across hosts it includes their clock difference).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def exposition() -> bytes:
    """The text exposition of /metrics: this process's registry, or every worker's files under workers."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    deliveries.flush()
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    with scraping(os.environ[MULTIPROCESS_DIR_VARIABLE]):
        return generate_latest(registry)


def start_flushing() -> None:
    """Under workers, flush the delivery counts every :data:`FLUSH_SECONDS` on the running reactor."""
    if not MULTIPROCESS:
        return
    from twisted.internet import task

    task.LoopingCall(deliveries.flush).start(FLUSH_SECONDS, now=False)


@contextlib.contextmanager
def shared_between_workers(parent: str | None = None) -> Iterator[MetricsDirectory]:
    """In the supervisor: a fresh directory for the workers' metric files (in ``parent``, by
    default the temporary directory), named in the environment the workers inherit; removed
    afterwards, unless a worker still runs (the last one out removes it then).

    This process keeps its own values in memory: prometheus_client chose how when it was imported.
    """
    directory = MetricsDirectory.create(parent)
    previous = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    os.environ[MULTIPROCESS_DIR_VARIABLE] = directory.path
    try:
        yield directory
    finally:
        if previous is None:
            del os.environ[MULTIPROCESS_DIR_VARIABLE]
        else:
            os.environ[MULTIPROCESS_DIR_VARIABLE] = previous
        directory.leave()
