"""The Server-Sent Events transport: a channel's messages as a ``text/event-stream``, for
EventSource and for networks that break WebSockets.

``GET /webchannel/v1/channels/{id}/events`` is a Django view like every other route (its CORS
headers, metrics and problem answers are Django's and django-cors-headers'), a thin adapter of
:class:`~channels_api.subscription.Subscription`: refusals are problem+json before the stream
starts; then each message is one event (see :mod:`channels_api.framing` for its two forms), a
comment (``: keepalive``) every ``server.ping_interval`` keeps proxies from timing the stream
out, and the stream ends when the channel is closed, the subscriber falls too far behind, the
token expires (an ``expired`` event first) or the server drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from http import HTTPStatus

from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

from .events import CloseCode
from .exceptions import Problem
from .framing import comment, named_event
from .logs import note_key
from .problems import BEARER_CHALLENGE, api_view
from .runtime import runtime
from .subscription import Overflow, Refused, Subscription, token_from_scope

EVENT_STREAM = "text/event-stream"
OPENING = comment("stream open")
"""The first bytes: they carry the headers out at once, before any message."""
KEEPALIVE = comment("keepalive")
EXPIRED = named_event("expired", "token expired")
"""The last event of a stream whose token reached its ``exp``."""
RETRY_AFTER_SECONDS = 5

Chunk = tuple[bytes, int, int]
"""Bytes of the stream, and the messages and payload bytes they carry (for the server's counts)."""


def accepts_event_stream(request: HttpRequest) -> bool:
    """False only when an ``Accept`` header is given and names none of the event stream's types."""
    accept = request.headers.get("accept")
    if accept is None:
        return True
    types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return bool(types & {EVENT_STREAM, "text/*", "*/*"})


def _is_events_path(raw_path: bytes | None) -> bool:
    """The request's path as sent ends in ``/events``: ``x%2Fevents`` is the channel ``x/events``
    (an invalid id, answered by the channel's own route), not the stream of ``x``."""
    return raw_path is None or raw_path.partition(b"?")[0].endswith(b"/events")


@api_view("GET")
async def channel_events(request: HttpRequest, channel_id: str) -> HttpResponseBase:
    """Open a subscription and stream it; refusals are problem+json before any event."""
    raw_path: bytes | None = request.scope.get("raw_path")  # type: ignore[attr-defined]
    if not _is_events_path(raw_path):
        from .views import channel

        return await channel(request, f"{channel_id}/events")
    if not accepts_event_stream(request):
        raise Problem(HTTPStatus.NOT_ACCEPTABLE, f"this endpoint answers {EVENT_STREAM} only")
    state = runtime()
    state.serve()
    subscription = Subscription(state)
    try:
        subscription.open(channel_id, raw_path and raw_path.rpartition(b"/events")[0], token_from_scope(request.scope))  # type: ignore[attr-defined]
        if subscription.grant is not None and subscription.grant.key_name is not None:
            note_key(request.scope, subscription.grant.key_name)  # type: ignore[attr-defined]
        await subscription.join()
    except Refused as refused:
        await subscription.leave()
        raise _problem(refused) from None
    return EventStreamResponse(subscription, state.config.server.ping_interval)


def _problem(refused: Refused) -> Problem:
    headers: dict[str, str] = {}
    if refused.status == HTTPStatus.UNAUTHORIZED:
        headers = dict(BEARER_CHALLENGE)
    elif refused.status == HTTPStatus.SERVICE_UNAVAILABLE:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return Problem(refused.status, refused.detail, headers=headers)


class EventStreamResponse(StreamingHttpResponse):
    """The stream of one subscription; it leaves the channel when the stream ends, or when the
    response is closed without ever being streamed."""

    def __init__(self, subscription: Subscription, keepalive: float) -> None:
        self._subscription = subscription
        self._keepalive = keepalive
        self._started = False
        super().__init__(self._bytes(), content_type=EVENT_STREAM)
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once

    async def _bytes(self) -> AsyncIterator[bytes]:
        async for data, _, _ in self.chunks():
            yield data

    async def chunks(self) -> AsyncGenerator[Chunk, None]:
        """The stream, each chunk with what it carries: webchannel's handler passes that on to the
        server, which counts messages as it writes them (one it drops is not counted)."""
        self._started = True
        subscription = self._subscription
        encodings = runtime().encodings
        try:
            yield OPENING, 0, 0
            while True:
                left = subscription.seconds_left()
                if left <= 0:
                    Subscription.closing(CloseCode.TOKEN_EXPIRED)
                    yield EXPIRED, 0, 0
                    return
                events = await subscription.next(within=min(self._keepalive, left))
                if not events:
                    if left > self._keepalive:
                        yield KEEPALIVE, 0, 0
                    continue
                for event in events:
                    if "data" in event:
                        data = event["data"]
                        yield encodings.event(data), 1, len(data)
                        subscription.written((event,))
                    if event["type"] == "relay.close":  # the channel was closed: its last message, then the end
                        Subscription.closing(CloseCode.CHANNEL_CLOSED)
                        return
        except Overflow as overflow:
            subscription.overflowed(overflow)
        finally:
            await subscription.leave()

    def close(self) -> None:
        super().close()
        if not self._started:  # never streamed (the client went away first): leave all the same
            self._started = True
            asyncio.get_running_loop().create_task(self._subscription.leave())
