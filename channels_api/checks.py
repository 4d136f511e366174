"""System checks (``manage.py check``): what webchannel cannot run without, and settings that
work but are risky.

- ``channels_api.E001``: an internal of another package that webchannel relies on is gone
  (:mod:`channels_api.fence`);
- ``channels_api.E002``: the configured channel layer is not one webchannel can use
  (:class:`~channels_api.layers.WebchannelLayer`);
- ``channels_api.W001`` to ``W003``: a short signing secret, ``/metrics`` without
  authentication, a Redis password sent unencrypted.

E001 and E002 carry the tag ``webchannel``: :func:`exit_if_unfit` runs them before a server
starts (``serve``, and the ASGI application of :mod:`channels_api.asgi`, so ``daphne
mysite.asgi:application`` too) and stops with one line.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Any, NoReturn
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register, run_checks

from .redis_hosts import redact_url

MIN_SECRET_BYTES = 32
TAG = "webchannel"
"""The tag of the checks a server cannot start without."""


@register(TAG)
def check_internals(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every internal of another package webchannel relies on is still there."""
    from .fence import problems

    return [
        Error(
            f"incompatible dependency: {line}",
            hint="Install the versions requirements.txt pins.",
            id="channels_api.E001",
        )
        for line in problems(include_redis=settings.WEBCHANNEL.redis.enabled)
    ]


@register(TAG)
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The channel layer does what webchannel needs of it (bounded backlogs, backpressure, readiness)."""
    from channels.layers import channel_layers

    from .layers import missing_methods

    backend = channel_layers.configs.get("default", {}).get("BACKEND", "(none)")
    try:
        layer = channel_layers["default"]
    except Exception as exc:
        return [Error(f"channel layer {backend} cannot be made: {exc}", id="channels_api.E002")]
    missing = missing_methods(layer)
    if not missing:
        return []
    return [
        Error(
            f"channel layer {backend} is not a webchannel layer (it lacks {', '.join(missing)})",
            hint="Use channels_api.layers.InMemoryChannelLayer or channels_api.server.redis_layer."
            "RedisPubSubChannelLayer (webchannel_settings() configures them).",
            id="channels_api.E002",
        )
    ]


def exit_if_unfit() -> None:
    """Before a server starts: run the ``webchannel`` checks; on an error print one line and exit 2."""
    errors = [message for message in run_checks(tags=[TAG]) if message.is_serious()]
    if errors:
        _exit(errors[0].msg + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))


def _exit(message: str) -> NoReturn:
    sys.stderr.write(f"webchannel: {message}\n")
    raise SystemExit(2)


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
