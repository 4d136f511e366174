"""System checks (``manage.py check``) for settings that work but are risky."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register

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
