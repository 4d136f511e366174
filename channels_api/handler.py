"""Django's ASGI handler, lean for a small JSON/bytes API: no thread hand-off per request.

Django's own ``ASGIHandler`` runs ``response.close()`` through ``sync_to_async`` inside a
``ThreadSensitiveContext`` (a new thread per request), spools every body into a
``SpooledTemporaryFile`` and races each request against a disconnect listener task.
Here, bodies are already bounded by :mod:`channels_api.limits` and nothing (no database, no
cache, no file response) needs closing in a thread. Only a streaming response (an event stream)
listens for the client going away, which ends it; an event stream's bodies tell webchannel's
server what they carry (:data:`~channels_api.events.SENT`), for its counts of messages sent.

Relies on these internals of Django's handler (verified by :mod:`channels_api.fence`;
``INTERNALS`` below): ``django.core.handlers.asgi.ASGIHandler`` (subclassed) with ``handle``
and ``read_body`` (overridden), ``create_request``, ``run_get_response`` and
``send_response``, and ``django.core.handlers.asgi.get_script_prefix``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from http import HTTPStatus

import django
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpResponseBase
from django.urls import set_script_prefix

from .asgi_types import Receive, Scope, Send
from .events import SENT
from .problems import Problem, problem_response

INTERNALS = (
    ("django", "django.core.handlers.asgi", "ASGIHandler"),
    ("django", "django.core.handlers.asgi.ASGIHandler", "handle"),
    ("django", "django.core.handlers.asgi.ASGIHandler", "read_body"),
    ("django", "django.core.handlers.asgi.ASGIHandler", "create_request"),
    ("django", "django.core.handlers.asgi.ASGIHandler", "run_get_response"),
    ("django", "django.core.handlers.asgi.ASGIHandler", "send_response"),
    ("django", "django.core.handlers.asgi", "get_script_prefix"),
)


class WebchannelASGIHandler(ASGIHandler):  # type: ignore[misc]
    """Serve one HTTP request through Django's middleware and views, on the event loop only."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}")
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        set_script_prefix(get_script_prefix(scope))
        await signals.request_started.asend(sender=self.__class__, scope=scope)
        try:
            request, _ = self.create_request(scope, body_file)
        except ValueError:  # e.g. a NUL in a Content-Type charset, which codecs.lookup refuses
            request = None
        response: HttpResponseBase
        if request is None:  # Django's own answer would be a bare text/html 400
            response = problem_response(Problem(HTTPStatus.BAD_REQUEST, "malformed request (query string or headers)"))
        else:
            response = await self.run_get_response(request)
        if response.streaming:
            await self._stream(response, receive, send)
        else:
            await self.send_response(response, send)
        response.close()  # sends request_finished; nothing here needs a thread
        body_file.close()

    async def _stream(self, response: HttpResponseBase, receive: Receive, send: Send) -> None:
        """Send a streaming response until it ends or the client goes away (which ends it)."""
        sending = asyncio.ensure_future(self._send_stream(response, send))
        listening = asyncio.ensure_future(receive())
        try:
            await asyncio.wait((sending, listening), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sending, listening):
                task.cancel()
            await asyncio.gather(sending, listening, return_exceptions=True)

    async def _send_stream(self, response: HttpResponseBase, send: Send) -> None:
        from .sse import EventStreamResponse

        if not isinstance(response, EventStreamResponse):
            await self.send_response(response, send)
            return
        await send({"type": "http.response.start", "status": response.status_code, "headers": _headers(response)})
        async with contextlib.aclosing(response.chunks()) as chunks:
            async for data, messages, size in chunks:
                await send({"type": "http.response.body", "body": data, "more_body": True, SENT: (messages, size)})
        await send({"type": "http.response.body", "body": b""})

    async def read_body(self, receive: Receive) -> io.BytesIO:  # type: ignore[override]
        """The whole body in memory: :class:`~channels_api.limits.BodyLimitMiddleware` bounds it."""
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return io.BytesIO(b"".join(chunks))


def _headers(response: HttpResponseBase) -> list[tuple[bytes, bytes]]:
    return [(name.encode("ascii"), value.encode("latin-1")) for name, value in response.items()]


def get_asgi_application() -> WebchannelASGIHandler:
    """Like ``django.core.asgi.get_asgi_application``, with the lean handler."""
    django.setup(set_prefix=False)
    return WebchannelASGIHandler()
