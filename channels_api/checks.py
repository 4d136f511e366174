"""System checks (``manage.py check``) for settings that work but are risky."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register

from .redis_hosts import redact_url

MIN_SECRET_BYTES = 32


@register()
def check_secret_length(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """HS256 wants a key at least as long as its hash (RFC 7518 §3.2)."""
    config = settings.WEBCHANNEL
    short = [
        name
        for name, key in (
            ("channel.secret_key", config.channel.secret_key),
            *(("channel.previous_secret_keys", k) for k in config.channel.previous_secret_keys),
        )
        if key is not None and len(key.encode()) < MIN_SECRET_BYTES
    ]
    return [
        Warning(
            f"{name} is shorter than {MIN_SECRET_BYTES} bytes",
            hint="Use a random secret, e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'.",
            id="channels_api.W001",
        )
        for name in dict.fromkeys(short)
    ]


@register(deploy=True)
def check_metrics_auth(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Metrics reveal traffic; a deployment usually protects them."""
    if settings.WEBCHANNEL.metrics.auth_enabled:
        return []
    return [
        Warning(
            "GET /metrics is served without authentication",
            hint="Set metrics.auth_enabled with a user name and password, or keep /metrics off the public network.",
            id="channels_api.W002",
        )
    ]


def _password_in_clear(url: str) -> bool:
    """A password sent over plain TCP to another machine, where the network can read it."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not (parts.password or parts.username):
        return False
    host = parts.hostname or ""
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


@register(deploy=True)
def check_redis_password_tls(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Redis credentials cross the network only under TLS (``rediss://``)."""
    return [
        Warning(
            f"redis.url sends its password unencrypted to {redact_url(url)}",
            hint="Use rediss:// (TLS; redis.ssl_ca_certs for a private CA), or keep Redis on this host.",
            id="channels_api.W003",
        )
        for url in settings.WEBCHANNEL.redis.url
        if _password_in_clear(url)
    ]
