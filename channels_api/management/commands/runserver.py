"""``manage.py runserver``: Daphne's development server, with webchannel's server fixes."""

from daphne.management.commands.runserver import Command as DaphneRunserverCommand

from channels_api.server import WebchannelServer


class Command(DaphneRunserverCommand):  # type: ignore[misc]
    server_cls = WebchannelServer

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        super().add_arguments(parser)
        parser.add_argument(
            "-c",
            "--config-file",
            metavar="PATH",
            help="TOML configuration file (read by manage.py before the settings; same as WC_CONFIG_FILE).",
        )
