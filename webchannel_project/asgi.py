"""ASGI entry point: HTTP through Django (behind the body-limit guard) except event streams,
WebSocket to the consumer.

Any ASGI server can serve ``webchannel_project.asgi:application``; configuration comes
from ``WC_CONFIG_FILE`` and ``WC_*`` variables. ``manage.py serve`` is the supported way
under Daphne (it adds empty-frame delivery and a graceful drain).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchannel_project.settings")

from channels_api.server.handler import get_asgi_application

django_application = get_asgi_application()  # sets Django up before the imports below

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from channels_api.limits import BodyLimitMiddleware  # noqa: E402
from channels_api.routing import websocket_urlpatterns  # noqa: E402
from channels_api.sse import with_event_streams  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Event streams (GET .../channels/{id}/events) are answered before Django.
        "http": BodyLimitMiddleware(with_event_streams(django_application)),
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
