"""``manage.py runserver``: Daphne's development server, with webchannel's server fixes."""

from daphne.management.commands.runserver import Command as DaphneRunserverCommand

from channels_api.logs import log_action
from channels_api.server.daphne_server import WebchannelServer


class Command(DaphneRunserverCommand):  # type: ignore[misc]
    server_cls = WebchannelServer

    def log_action(self, protocol, action, details):  # type: ignore[no-untyped-def]
        """Webchannel's access log: Daphne's would print ``access_token`` values."""
        log_action(protocol, action, details)

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        super().add_arguments(parser)
        parser.add_argument(
            "-c",
            "--config-file",
            metavar="PATH",
            help="TOML configuration file (read by manage.py before the settings; same as WC_CONFIG_FILE).",
        )
