"""``manage.py serve [-c FILE]``: run webchannel under Daphne on ``server.listen_address``."""

from __future__ import annotations

import logging
import resource
from typing import Any

from daphne.endpoints import build_endpoint_description_strings
from daphne.management.commands.runserver import get_default_application
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from channels_api.config import parse_listen_address
from channels_api.logs import log_action
from channels_api.server import WebchannelServer

logger = logging.getLogger("channels_api")


def _raise_open_files_limit(max_connections: int) -> None:
    """Every subscriber is a file descriptor: lift the soft limit to the hard one, as nginx does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < max_connections + 100:
        logger.warning(
            "open-files limit %d is below server.max_connections (%d): raise it (ulimit -n) or lower the setting",
            soft,
            max_connections,
        )


class Command(BaseCommand):
    help = "Run webchannel (HTTP and WebSocket) under Daphne on server.listen_address."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-c",
            "--config-file",
            metavar="PATH",
            help="TOML configuration file (read by manage.py before the settings; same as WC_CONFIG_FILE).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        config = settings.WEBCHANNEL
        _raise_open_files_limit(config.server.max_connections)
        host, port = parse_listen_address(config.server.listen_address)
        layer = "redis" if config.redis.url else "in-process"
        logger.info("webchannel starting on %s (channel layer: %s)", config.server.listen_address, layer)
        server = WebchannelServer(
            application=get_default_application(),
            endpoints=build_endpoint_description_strings(host=host, port=port),
            action_logger=log_action if config.server.access_log else None,
            server_name="webchannel",
        )
        server.run()
        if server.listen_failed:
            raise SystemExit(1)
