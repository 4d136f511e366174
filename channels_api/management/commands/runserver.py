"""``manage.py runserver``: Daphne's development server, with webchannel's server fixes."""

import functools
import os
from typing import Any

from daphne.management.commands.runserver import Command as DaphneRunserverCommand
from django.conf import settings

from channels_api.apps import announce_generated_secrets
from channels_api.checks import exit_if_unfit
from channels_api.logs import log_action
from channels_api.management.cli import add_config_file_argument


class Command(DaphneRunserverCommand):  # type: ignore[misc]
    help = "Development server (HTTP and WebSocket) on [ADDR:]PORT, restarted when the code changes."

    def handle(self, *args: Any, **options: Any) -> None:
        # Before the server's modules are imported: they subclass what the checks verify.
        exit_if_unfit()
        from channels_api.server.daphne_server import WebchannelServer

        self.server_cls = functools.partial(WebchannelServer, config=settings.WEBCHANNEL)
        # Printed by the autoreloader's parent; its server process inherits the values (and prints none).
        os.environ.update(announce_generated_secrets())
        super().handle(*args, **options)

    def log_action(self, protocol, action, details):  # type: ignore[no-untyped-def]
        """Webchannel's access log: Daphne's would print ``access_token`` values."""
        log_action(protocol, action, details)

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        super().add_arguments(parser)
        add_config_file_argument(parser)
