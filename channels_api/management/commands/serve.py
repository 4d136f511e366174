"""``manage.py serve [-c FILE]``: run webchannel under Daphne on ``server.listen_address``."""

from __future__ import annotations

import logging
from typing import Any

from daphne.endpoints import build_endpoint_description_strings
from daphne.management.commands.runserver import get_default_application
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from channels_api.config import parse_listen_address
from channels_api.logs import log_action
from channels_api.server import WebchannelServer

logger = logging.getLogger("channels_api")


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
        host, port = parse_listen_address(config.server.listen_address)
        layer = "redis" if config.redis.url else "in-process"
        logger.info("webchannel starting on %s (channel layer: %s)", config.server.listen_address, layer)
        server = WebchannelServer(
            application=get_default_application(),
            endpoints=build_endpoint_description_strings(host=host, port=port),
            action_logger=log_action if config.server.access_log else None,
            ping_interval=config.server.ping_interval,
            ping_timeout=config.server.ping_timeout,
            # Autobahn applies these to frames we send as well: room for the largest message.
            websocket_max_message_size=config.channel.max_message_size,
            websocket_max_frame_size=config.channel.max_message_size,
            drain_window=config.server.drain_window,
            server_name="webchannel",
        )
        server.run()
        if server.listen_failed:
            raise SystemExit(1)
