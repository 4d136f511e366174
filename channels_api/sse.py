"""Server-Sent Events: a channel's messages as a ``text/event-stream``, for EventSource and
for networks that break WebSockets.

``GET /webchannel/v1/channels/{id}/events`` is answered here, before Django, by an ASGI
application that subscribes like a WebSocket subscriber does (same token rules, same
``server.max_connections`` count, same bounded backlog) and writes each message as one event:

- a payload that is valid UTF-8 and holds no carriage return is a plain event, one
  ``data:`` line per ``\\n``-separated line, which EventSource joins back with ``\\n``
  into exactly the published text;
- any other payload is ``event: binary`` with its bytes in base64 on one ``data:`` line.
  EventSource treats ``\\r\\n``, ``\\r`` and ``\\n`` all as line ends, so a payload holding
  ``\\r`` could not come back byte for byte as text.

A comment (``: keepalive``) every ``server.ping_interval`` keeps proxies from timing the
stream out. Refusals come before the stream starts, as problem+json. The server's HTTP
protocol bounds the bytes a stalled reader leaves unsent (``server.max_backlog_bytes``)
and ends the streams on a drain.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from channels.layers import get_channel_layer
from django.conf import settings
from django_prometheus.middleware import Metrics

from . import consumers, metrics, presence
from .auth import verify_grant
from .delivery_lag import delivery_lag
from .events import CloseCode, RefusalReason
from .exceptions import InvalidChannelId, ScopeDenied, TokenError
from .layers import layer_outage
from .logs import note_api_key
from .names import channel_id_from_url, group_name
from .problems import PROBLEM_CONTENT_TYPE, problem_body

logger = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
VIEW_NAME = "channel_events"
"""The ``view`` label of the HTTP response metrics for this endpoint."""
_EVENTS_PATH = re.compile(r"/webchannel/v1/channels/([^/]+)/events")
_RAW_EVENTS_PATH = re.compile(rb"/webchannel/v1/channels/([^/]+)/events")
STREAM_HEADERS = [
    (b"content-type", EVENT_STREAM.encode()),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
]
OPENING = b": stream open\n\n"
"""The first bytes: they carry the headers out at once, before any message."""
KEEPALIVE = b": keepalive\n\n"
EXPIRED = b"event: expired\ndata: token expired\n\n"
"""The last event of a stream whose token reached its ``exp``."""
RETRY_AFTER_SECONDS = 5


def event_bytes(data: bytes) -> bytes:
    """One published payload as one event (see the module docstring for the two forms)."""
    if b"\r" not in data:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return b"".join([b"data: " + line + b"\n" for line in data.split(b"\n")]) + b"\n"
    return b"event: binary\ndata: " + base64.b64encode(data) + b"\n\n"


_last_event: tuple[bytes, bytes] = (b"", b"data: \n\n")


def cached_event(data: bytes) -> bytes:
    """:func:`event_bytes`, computed once per message for all the streams of a process."""
    global _last_event
    last, event = _last_event
    if data is not last:
        event = event_bytes(data)
        _last_event = (data, event)
    return event


def events_route(scope: dict[str, Any]) -> str | None:
    """The channel id as routed if ``scope`` asks for a channel's event stream, else None.

    The raw path decides when the server gives it: ``x%2Fevents`` is the channel id
    ``x/events`` (an invalid one, answered by the publish route), not the stream of ``x``.
    """
    if scope["method"] != "GET" or not scope["path"].endswith("/events"):
        return None
    raw = scope.get("raw_path")
    if raw is not None:
        match = _RAW_EVENTS_PATH.fullmatch(raw.partition(b"?")[0])
        return unquote(match.group(1).decode("latin-1")) if match else None
    text_match = _EVENTS_PATH.fullmatch(scope["path"])
    return text_match.group(1) if text_match else None


def with_event_streams(django_application: Any) -> Any:
    """An ASGI application that serves event streams itself and hands every other HTTP request on.

    Costs every other request two string comparisons.
    """

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            routed = events_route(scope)
            if routed is not None:
                await EventStream(scope, receive, send).run(routed)
                return
        await django_application(scope, receive, send)

    return application


def _accepts_event_stream(scope: dict[str, Any]) -> bool:
    """False only when an ``Accept`` header is given and names none of the event stream's types."""
    accepts = [value.decode("latin-1").lower() for name, value in scope.get("headers", ()) if name == b"accept"]
    if not accepts:
        return True
    types = {part.split(";")[0].strip() for value in accepts for part in value.split(",")}
    return bool(types & {EVENT_STREAM, "text/*", "*/*"})


def cors_headers(scope: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """What Django's CORS middleware would add for this request's ``Origin``: a page on an
    allowed origin may read the stream (EventSource makes a CORS request without credentials)."""
    origin = next((value for name, value in scope.get("headers", ()) if name == b"origin"), None)
    if origin is None:
        return []
    server = settings.WEBCHANNEL.server
    if server.cors_allow_any_origin:
        return [(b"access-control-allow-origin", b"*")]
    if origin.decode("latin-1") in server.cors_origins:
        return [(b"access-control-allow-origin", origin), (b"vary", b"origin")]
    return []


class EventStream:
    """One subscriber's event stream, from the request to its end."""

    def __init__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.layer: Any = None
        self.group: str | None = None
        self.channel_name = ""
        self.disconnected = False
        self.listening = False
        self.status = 0
        self.expires_at = 0.0

    async def run(self, routed: str) -> None:
        """Refuse with problem+json, or stream until the client, the channel or the server ends it."""
        first = await self.receive()  # the (empty) body of the GET
        if first["type"] == "http.disconnect":
            return
        try:
            channel_id = self._authorized_channel(routed)
        except _Refusal as refusal:
            await self._refuse(refusal.status, refusal.detail, refusal.headers)
            return
        if consumers._open_sockets >= settings.WEBCHANNEL.server.max_connections:
            metrics.websocket_refused.labels(reason=RefusalReason.MAX_CONNECTIONS.value).inc()
            await self._refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "this server holds as many subscribers as it may; retry later or elsewhere",
                [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
            )
            return
        self.group = group_name(channel_id)
        consumers.SubscriberConsumer._count_open(+1)  # before any await, like a WebSocket subscriber
        try:
            if await self._join(self.group):
                await self._stream()
        finally:
            await self._leave()

    def _authorized_channel(self, routed: str) -> str:
        if not _accepts_event_stream(self.scope):
            raise _Refusal(HTTPStatus.NOT_ACCEPTABLE, f"this endpoint answers {EVENT_STREAM} only")
        try:
            raw = self.scope.get("raw_path")
            channel_id = channel_id_from_url(routed, raw and raw.partition(b"?")[0])
            config = settings.WEBCHANNEL
            grant = verify_grant(consumers.token_from_scope(self.scope), config.secret_keys, config.keyring)
            if grant.key_name is not None:
                note_api_key(grant.key_name)  # as for any HTTP request a named key's token authenticates
            grant.check(channel_id, "subscribe")
        except InvalidChannelId as exc:
            metrics.websocket_refused.labels(reason=exc.refusal.value).inc()
            raise _Refusal(HTTPStatus.BAD_REQUEST, str(exc)) from None
        except TokenError as exc:
            metrics.websocket_refused.labels(reason=exc.refusal.value).inc()
            if exc.refusal == RefusalReason.WRONG_CHANNEL:
                raise _Refusal(HTTPStatus.FORBIDDEN, str(exc)) from None
            raise _Refusal(HTTPStatus.UNAUTHORIZED, str(exc), [(b"www-authenticate", b"Bearer")]) from None
        except ScopeDenied as exc:
            raise _Refusal(HTTPStatus.FORBIDDEN, str(exc)) from None
        self.expires_at = float(grant.claims["exp"])
        return channel_id

    async def _join(self, group: str) -> bool:
        """Join the channel's group; a layer that does not answer is a 503 before the stream starts."""
        self.layer = get_channel_layer()
        self.channel_name = await self.layer.new_channel()
        try:
            async with asyncio.timeout(consumers.SUBSCRIBE_TIMEOUT_SECONDS):
                await self.layer.group_add(group, self.channel_name)
        except Exception as exc:  # the layer's own errors (Redis down, wedged)
            layer_outage.failed("subscribe", exc)
            metrics.websocket_refused.labels(reason=RefusalReason.LAYER_UNAVAILABLE.value).inc()
            await self._refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "the channel layer is unavailable; retry",
                [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
            )
            return False
        layer_outage.succeeded()
        presence.joined(group)  # a listener from here on, like an accepted WebSocket
        self.listening = True
        return True

    async def _stream(self) -> None:
        await self._start(HTTPStatus.OK, STREAM_HEADERS)
        await self._write(OPENING)
        tasks = [
            asyncio.create_task(self._relay()),
            asyncio.create_task(self._keepalive(settings.WEBCHANNEL.server.ping_interval)),
            asyncio.create_task(self._until_disconnect()),
            asyncio.create_task(self._until_expired()),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if not self.disconnected:
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _relay(self) -> None:
        """Write each message of the channel, in order; return when the stream must end."""
        receive, channel = self.layer.receive, self.channel_name
        try:
            while True:
                event = await receive(channel)
                kind = event["type"]
                if kind == "relay.message":
                    await self._deliver(event)
                elif kind == "relay.overflow":
                    metrics.message_send_errors.inc(event["dropped"])
                    logger.info("event stream too slow: ending it, %d messages dropped", event["dropped"])
                    return
                elif kind == "relay.close":  # the channel was closed: its last message, then the end
                    if "data" in event:
                        await self._deliver(event)
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("event stream relay failed; ending the stream")

    async def _deliver(self, event: Any) -> None:
        data = event["data"]
        await self._write(cached_event(data))
        metrics.deliveries.sent += 1
        metrics.deliveries.sent_bytes += len(data)
        if event is not delivery_lag.last:
            delivery_lag.written(event)

    async def _keepalive(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self._write(KEEPALIVE)

    async def _until_expired(self) -> None:
        """At the token's ``exp``, an ``expired`` event ends the stream: a subscription lasts no
        longer than its token (the page opens a new EventSource with a fresh one)."""
        await asyncio.sleep(max(0.0, self.expires_at - time.time()))
        await self._write(EXPIRED)
        metrics.websocket_closed.labels(code=CloseCode.TOKEN_EXPIRED.label).inc()

    async def _until_disconnect(self) -> None:
        """Return once the client went away, the server dropped a stalled reader, or a drain ended the stream."""
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True

    async def _write(self, body: bytes) -> None:
        await self.send({"type": "http.response.body", "body": body, "more_body": True})

    async def _start(self, status: HTTPStatus, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        Metrics.get_instance().responses_by_status_view_method.labels(str(status.value), VIEW_NAME, "GET").inc()
        headers = [*headers, *cors_headers(self.scope)]
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def _refuse(self, status: HTTPStatus, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        body = problem_body(status, detail)
        await self._start(
            status,
            [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        )
        await self.send({"type": "http.response.body", "body": body})

    async def _leave(self) -> None:
        if self.group is None:
            return
        group, self.group = self.group, None
        consumers.SubscriberConsumer._count_open(-1)
        if self.listening:
            self.listening = False
            presence.left(group)
        if not self.channel_name:
            return
        self.layer.forget_channel(self.channel_name)
        try:
            async with asyncio.timeout(consumers.SUBSCRIBE_TIMEOUT_SECONDS):
                await self.layer.group_discard(group, self.channel_name)
        except Exception as exc:  # Redis gone: its subscription dies with the connection
            logger.debug("group_discard failed: %s", exc)


class _Refusal(Exception):
    def __init__(self, status: HTTPStatus, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or []
