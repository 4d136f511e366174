"""WebSocket routes."""

from __future__ import annotations

from typing import Any

from django.urls import path, re_path

from .consumers import SubscriberConsumer


async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Any other WebSocket path: refuse the handshake (Daphne answers 403)."""
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.close"})


websocket_urlpatterns = [
    path("webchannel/v1/channels/<path:channel_id>", SubscriberConsumer.as_asgi()),
    re_path(r"", refuse),  # type: ignore[arg-type]  # channels routes take ASGI apps
]
