"""Django settings that follow from webchannel's configuration, in one place.

webchannel's own project and a host Django project that adds webchannel to itself both
take ``WEBCHANNEL`` and ``CHANNEL_LAYERS`` from here, so the mapping from configuration to
Django is never copied.
"""

from __future__ import annotations

import os
from typing import Any

from .config import Config, load_config
from .envfile import read_env_file
from .exceptions import ConfigError
from .redis_hosts import layer_hosts


def load_webchannel_config() -> Config:
    """The configuration from ``WC_CONFIG_FILE``, ``WC_*`` variables and a ``.env`` file.

    A bad configuration prints one line and exits with status 2, wherever settings are loaded.
    """
    from .management.cli import exit_with_config_error

    try:
        return load_config(None, os.environ, read_env_file(os.environ))
    except ConfigError as exc:
        exit_with_config_error(str(exc))


def channel_layers(config: Config) -> dict[str, Any]:
    """``CHANNEL_LAYERS``: webchannel's Redis pub/sub layer with ``redis.url``, else in memory."""
    if config.redis.enabled:
        return {
            "default": {
                "BACKEND": "channels_api.server.redis_layer.RedisPubSubChannelLayer",
                "CONFIG": {
                    # one entry per server (a shard each), or one Sentinel entry; connect timeouts and
                    # health checks (which PING the pub/sub connection, so a dead one is redialled)
                    "hosts": layer_hosts(config.redis),
                    "prefix": config.redis.prefix,  # starts every Redis channel name
                    "max_backlog_bytes": config.server.max_backlog_bytes,
                },
            }
        }
    return {
        "default": {
            "BACKEND": "channels_api.layers.InMemoryChannelLayer",
            "CONFIG": {"max_backlog_bytes": config.server.max_backlog_bytes},
        }
    }


def webchannel_settings(config: Config | None = None) -> dict[str, Any]:
    """``WEBCHANNEL`` and ``CHANNEL_LAYERS`` for a Django settings module.

    In a host project: ``globals().update(webchannel_settings())``. Without ``config``, it is
    read as by ``manage.py serve`` (``WC_CONFIG_FILE``, ``WC_*`` variables, ``.env``).
    """
    config = load_webchannel_config() if config is None else config
    return {"WEBCHANNEL": config, "CHANNEL_LAYERS": channel_layers(config)}
