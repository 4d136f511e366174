"""Settings of an existing Django project that adds webchannel (the lines marked "webchannel").

webchannel's own configuration comes, as for ``manage.py serve``, from the TOML file named
by ``WC_CONFIG_FILE``, ``WC_*`` variables and a ``.env`` file: the web process and every
worker process read the same one, so they share the secret and the Redis server.
"""

import os

from channels_api import webchannel_settings

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "channels_api",  # webchannel: system checks, its commands (serve, genconfig)
    "channels",  # webchannel: the channel layer and WebSocket routing
    "progress",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "mysite.urls"
ASGI_APPLICATION = "mysite.asgi.application"  # webchannel: WebSockets need ASGI

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]

DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TIME_ZONE = "UTC"

# webchannel: WEBCHANNEL (the parsed configuration) and CHANNEL_LAYERS (its Redis pub/sub
# layer when redis.url is set, else in memory), mapped as webchannel's own project does.
_webchannel = webchannel_settings()
WEBCHANNEL = _webchannel["WEBCHANNEL"]
CHANNEL_LAYERS = _webchannel["CHANNEL_LAYERS"]
