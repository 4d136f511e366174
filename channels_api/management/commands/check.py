"""``manage.py check [--deploy] [-c FILE]``: Django's system checks, webchannel's among them, on a configuration."""

from __future__ import annotations

from django.core.management.base import CommandParser
from django.core.management.commands.check import Command as DjangoCheckCommand

from channels_api.management.cli import add_config_file_argument


class Command(DjangoCheckCommand):
    help = "Check the project and its configuration for problems (--deploy: also what matters in production)."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        add_config_file_argument(parser)
