"""The ASGI application: webchannel's own project, and any Django project that embeds webchannel.

HTTP goes to Django (its URLconf includes ``channels_api.urls``: the API, the event streams and
the operations endpoints) behind the body limits of the route table; WebSocket connections go
to the subscriber consumer, after the host project's own WebSocket routes if any. Building the
application runs the checks a server cannot start without (``channels_api.E001``, ``E002``) and
stops with one line when one fails, under any ASGI server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .asgi_types import ASGIApp

__all__ = ["webchannel_application"]


def webchannel_application(http: ASGIApp | None = None, websocket_routes: Sequence[Any] = ()) -> ASGIApp:
    """The ASGI application: ``http`` (Django's ASGI application, webchannel's lean handler when
    None) for HTTP, and for WebSocket ``websocket_routes`` (channels ``path()`` entries of a host
    project) before webchannel's. Call it after Django is set up (``get_asgi_application()``)."""
    from channels.routing import ProtocolTypeRouter, URLRouter
    from django.conf import settings

    from .checks import exit_if_unfit
    from .handler import get_asgi_application
    from .limits import BodyLimitMiddleware
    from .routing import websocket_urlpatterns

    http = http or get_asgi_application()
    exit_if_unfit()
    return ProtocolTypeRouter(  # type: ignore[no-any-return]
        {
            "http": BodyLimitMiddleware(http, settings.WEBCHANNEL.channel.max_message_size),
            "websocket": URLRouter([*websocket_routes, *websocket_urlpatterns]),
        }
    )
