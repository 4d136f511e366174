"""Django's ASGI handler, lean for a small JSON/bytes API: no thread hand-off per request.

Django's own ``ASGIHandler`` runs ``response.close()`` through ``sync_to_async`` inside a
``ThreadSensitiveContext`` (a new thread per request), spools every body into a
``SpooledTemporaryFile`` and races each request against a disconnect listener task.
Here, bodies are already bounded by :mod:`channels_api.limits`, no view streams, and
nothing (no database, no cache, no file response) needs closing in a thread.

Relies on these internals of Django's handler (verified at startup by :mod:`.compat`;
``INTERNALS`` below): ``django.core.handlers.asgi.ASGIHandler`` (subclassed) with ``handle``
and ``read_body`` (overridden), ``create_request``, ``run_get_response`` and
``send_response``, and ``django.core.handlers.asgi.get_script_prefix``.
"""

from __future__ import annotations

import io
from http import HTTPStatus
from typing import Any

import django
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import HttpResponseBase
from django.urls import set_script_prefix

from ..problems import Problem, problem_response

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

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}")
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
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
        await self.send_response(response, send)
        response.close()  # sends request_finished; nothing here needs a thread
        body_file.close()

    async def read_body(self, receive: Any) -> io.BytesIO:
        """The whole body in memory: :class:`~channels_api.limits.BodyLimitMiddleware` bounds it."""
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestAborted()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return io.BytesIO(b"".join(chunks))


def get_asgi_application() -> WebchannelASGIHandler:
    """Like ``django.core.asgi.get_asgi_application``, with the lean handler."""
    django.setup(set_prefix=False)
    return WebchannelASGIHandler()
