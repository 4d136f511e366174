"""App config (system checks, request signals), and the one warning about generated secrets.

A secret is generated when the configuration leaves it unset. Only a serving command
announces it, once: other commands (``check``, ``shell``, ...) never use it. The serving
process hands what it generated to its child processes through their environment, so the
autoreloader's server and every worker use the key that was printed instead of their own.
"""

import logging
import warnings
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.signals import setting_changed

from .runtime import Runtime

logger = logging.getLogger("channels_api")


def _disconnect_unused_request_signals() -> None:
    """The standalone service has no database and no cache; their per-request housekeeping is
    sync code that Django runs through a thread hand-off on every ASGI request.

    A host project with databases keeps it: its connections must still be closed per request.
    """
    if settings.DATABASES:
        return
    from django.core import signals
    from django.core.cache import close_caches
    from django.db import close_old_connections, reset_queries

    signals.request_started.disconnect(reset_queries)
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_caches)


class ChannelsApiConfig(AppConfig):
    """The webchannel app."""

    name = "channels_api"
    verbose_name = "webchannel"

    runtime: Runtime
    """This process's state (:mod:`channels_api.runtime`), made from the configuration when Django starts."""

    def ready(self) -> None:
        # A short secret is reported once by check channels_api.W001, not on every token.
        import jwt

        from . import checks  # noqa: F401  (registers the system checks)

        _disconnect_unused_request_signals()
        warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)
        self.runtime = Runtime.from_config(settings.WEBCHANNEL)
        setting_changed.connect(self._configuration_changed)

    def _configuration_changed(self, setting: str, value: Any, **kwargs: Any) -> None:
        """A test replaced ``WEBCHANNEL``: the process's state follows the new configuration."""
        if setting == "WEBCHANNEL":
            self.runtime = Runtime.from_config(value)


SHARED_SECRET_VARIABLES = {"channel.secret_key": "WC_CHANNEL__SECRET_KEY", "channel.api_keys": "WC_CHANNEL__API_KEYS"}


def announce_generated_secrets() -> dict[str, str]:
    """Warn about the secrets generated for this process; return them as environment variables.

    Called by the serving commands only. The returned variables, set in a child process's
    environment, make it use these values: set there, they are configured, not generated, so
    the child says nothing about them.
    """
    config = settings.WEBCHANNEL
    if "channel.secret_key" in config.generated:
        logger.warning(
            "channel.secret_key is not set: using a random secret for this process; "
            "tokens will not survive a restart (set channel.secret_key or WC_CHANNEL__SECRET_KEY)"
        )
    if "channel.api_keys" in config.generated:
        # Printed once, on purpose: otherwise nobody could use a first run.
        logger.warning(
            "channel.api_keys is not set: generated API key for this process: %s "
            "(set channel.api_keys or WC_CHANNEL__API_KEYS)",
            config.channel.api_keys[0],
        )
    values = {"channel.secret_key": config.channel.secret_key, "channel.api_keys": ",".join(config.channel.api_keys)}
    return {SHARED_SECRET_VARIABLES[key]: str(values[key]) for key in config.generated}
