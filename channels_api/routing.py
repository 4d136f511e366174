"""WebSocket routes: the consumers of the route table (:mod:`.routes`), then a refusal of every other path."""

from __future__ import annotations

from django.urls import path, re_path
from django.utils.module_loading import import_string

from .asgi_types import Receive, Scope, Send
from .routes import ROUTES


async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
    """Any other WebSocket path: refuse the handshake (the server answers 403)."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close"})


websocket_urlpatterns = [
    *(path(route.path, import_string(route.consumer).as_asgi()) for route in ROUTES if route.consumer),
    re_path(r"", refuse),  # type: ignore[arg-type]  # channels routes take ASGI apps
]
