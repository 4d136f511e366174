"""Django settings: webchannel's configuration, read once by ``load_config``, mapped to Django.

Nothing here is meant to be edited per deployment: use a TOML file (``-c`` or
``WC_CONFIG_FILE``), ``WC_*`` variables and a ``.env`` file, documented in docs/reference/configuration.md.
"""

import secrets

from channels_api.config import Config
from channels_api.host_settings import channel_layers, load_webchannel_config
from channels_api.logs import logging_settings
from channels_api.routes import CREATE_BODY_LIMIT

WEBCHANNEL: Config = load_webchannel_config()  # a bad configuration exits here, with one line

# Django signs nothing that must outlive the process (no sessions, no CSRF cookies).
SECRET_KEY = secrets.token_urlsafe(50)
DEBUG = False
ALLOWED_HOSTS = list(WEBCHANNEL.server.allowed_hosts)

INSTALLED_APPS = [
    "channels_api",  # first, so its runserver (with webchannel's server fixes) wins
    "daphne",
    "channels",
    "corsheaders",
    "django_prometheus",
]

# Every middleware is async-native: no thread hand-off per request (channels_api/middleware.py).
MIDDLEWARE = [
    "channels_api.middleware.prometheus_middleware",
    "channels_api.middleware.SecurityMiddleware",
    "corsheaders.middleware.CorsMiddleware",
]

ROOT_URLCONF = "webchannel_project.urls"
ASGI_APPLICATION = "webchannel_project.asgi.application"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False

# Limits are enforced on the raw stream by channels_api.limits; Django's own would answer 400.
DATA_UPLOAD_MAX_MEMORY_SIZE = None
FILE_UPLOAD_MAX_MEMORY_SIZE = max(WEBCHANNEL.channel.max_message_size, CREATE_BODY_LIMIT) + 1

CHANNEL_LAYERS = channel_layers(WEBCHANNEL)  # shared with host projects (webchannel_settings)

CORS_ALLOWED_ORIGINS = list(WEBCHANNEL.server.cors_origins)
CORS_ALLOW_ALL_ORIGINS = WEBCHANNEL.server.cors_allow_any_origin
CORS_ALLOW_METHODS = ["GET", "POST", "DELETE", "OPTIONS"]
CORS_ALLOW_HEADERS = ["authorization", "content-type", "x-api-key"]
CORS_PREFLIGHT_MAX_AGE = 600
# A browser publisher may read how many subscribers a message reached.
CORS_EXPOSE_HEADERS = ["webchannel-subscribers"]

# The API serves no HTML pages and sets no cookies: framing (security.W002) and CSRF
# (security.W003) do not apply. TLS and HSTS belong to the proxy in front (docs/operations/proxies.md).
# security.W001 looks for Django's SecurityMiddleware by name; webchannel's is a subclass of it.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "no-referrer"

LOGGING = logging_settings(WEBCHANNEL.log)
