"""Prometheus metrics, declared once. HTTP responses by view and status come from django-prometheus."""

from prometheus_client import Counter, Gauge, disable_created_metrics

# The *_created series double the scrape for no use here.
disable_created_metrics()

messages_published = Counter("webchannel_messages_published", "Messages accepted by POST /webchannel/v1/channels/{id}.")
messages_published_bytes = Counter("webchannel_messages_published_bytes", "Payload bytes of accepted messages.")
messages_sent = Counter("webchannel_messages_sent", "Frames written to subscriber sockets.")
messages_sent_bytes = Counter("webchannel_messages_sent_bytes", "Payload bytes written to subscribers.")
message_send_errors = Counter(
    "webchannel_message_send_errors",
    "Messages a subscriber did not get: discarded by an overflowing backlog or failed sends.",
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
