"""ASGI entry point: webchannel's application (:mod:`channels_api.asgi`).

Any ASGI server can serve ``webchannel_project.asgi:application``; configuration comes from
``WC_CONFIG_FILE`` and ``WC_*`` variables. ``manage.py serve`` is the supported way under Daphne
(it adds empty-frame delivery, bounded unsent bytes and a graceful drain).
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchannel_project.settings")

from channels_api.handler import get_asgi_application

django_application = get_asgi_application()  # sets Django up before the application is built

from channels_api.asgi import webchannel_application  # noqa: E402

application = webchannel_application(django_application)
