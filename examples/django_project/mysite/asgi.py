"""ASGI entry point: HTTP to Django, WebSockets to webchannel's subscriber routes.

Serve it with any ASGI server, e.g. ``daphne mysite.asgi:application``.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

from django.core.asgi import get_asgi_application

django_application = get_asgi_application()  # sets Django up before the imports below

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from channels_api.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_application,
        # webchannel's routes end with a catch-all that refuses any other path: list your own
        # WebSocket routes before them, e.g. URLRouter([*my_routes, *websocket_urlpatterns]).
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
