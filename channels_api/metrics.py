"""Prometheus metrics, declared once. HTTP responses by view and status come from django-prometheus."""

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, disable_created_metrics
from prometheus_client.core import CounterMetricFamily

# The *_created series double the scrape for no use here.
disable_created_metrics()

messages_published = Counter("webchannel_messages_published", "Messages accepted by POST /webchannel/v1/channels/{id}.")
messages_published_bytes = Counter("webchannel_messages_published_bytes", "Payload bytes of accepted messages.")


class Deliveries:
    """Per-delivery counts as plain integers, read when /metrics is scraped.

    The server's WebSocket protocol counts a frame once it is written, so one dropped for a
    closing socket is not counted. A fan-out counts once per subscriber per message; a ``Counter.inc`` takes a lock each
    time. Everything that touches these runs on the event loop, so no lock is needed.
    """

    sent = 0
    sent_bytes = 0

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("webchannel_messages_sent", "Frames written to subscriber sockets.", self.sent)
        yield CounterMetricFamily(
            "webchannel_messages_sent_bytes", "Payload bytes written to subscribers.", self.sent_bytes
        )


deliveries = Deliveries()
REGISTRY.register(deliveries)  # type: ignore[arg-type]
message_send_errors = Counter(
    "webchannel_message_send_errors",
    "Messages a subscriber closed with 4008 did not get: those its backlog discarded, "
    "the frame that did not fit its unsent bytes and every later one.",
)
users_connected = Gauge("webchannel_users_connected", "Open subscriber WebSockets in this process.")
websocket_messages_received = Counter(
    "webchannel_websocket_messages_received", "Data frames received from subscribers (each closes the socket)."
)
channels_created = Counter("webchannel_channels_created", "Tokens issued by POST /webchannel/v1/channels.")
websocket_refused = Counter("webchannel_websocket_refused", "Subscribe handshakes refused, by reason.", ["reason"])
websocket_closed = Counter(
    "webchannel_websocket_closed", "Subscriber sockets closed by the server, by close code.", ["code"]
)
