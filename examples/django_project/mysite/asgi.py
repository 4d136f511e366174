"""ASGI entry point: HTTP to Django (webchannel's routes included by the URLconf), WebSockets to
webchannel's subscriber route after any of the project's own.

Serve it with any ASGI server, e.g. ``daphne mysite.asgi:application``: building the application
runs webchannel's startup checks, which stop the server with one line if one fails.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

from django.core.asgi import get_asgi_application

django_application = get_asgi_application()  # sets Django up before webchannel's application is built

from channels_api.asgi import webchannel_application  # noqa: E402

# The project's own WebSocket routes, if any, go in websocket_routes: webchannel's end with a
# catch-all that refuses any other path.
application = webchannel_application(django_application, websocket_routes=[])
