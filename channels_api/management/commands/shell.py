"""``manage.py shell [--config-file FILE] [-c CODE]``: Django's shell, on a configuration.

Here ``-c`` is Django's (run CODE and exit), so the configuration file is ``--config-file`` only.
"""

from __future__ import annotations

from django.core.management.base import CommandParser
from django.core.management.commands.shell import Command as DjangoShellCommand

from channels_api.management.cli import add_config_file_argument


class Command(DjangoShellCommand):
    help = "A Python shell on webchannel's configuration; -c CODE runs CODE and exits."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        add_config_file_argument(parser, short=False)
