"""The ``webchannel`` console script and ``manage.py``: Django's command line, with the config file set first.

``-c FILE`` must be known before Django reads the settings, which happens before the command
parses its own arguments, so it is taken out of argv here and exported as ``WC_CONFIG_FILE``
(:mod:`channels_api.management.cli`). Alone (or with ``help``, ``--help``, ``-h``), the
command lists webchannel's commands rather than every Django command.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Run a Django management command: ``webchannel serve -c FILE`` is ``python manage.py serve -c FILE``."""
    argv = list(sys.argv if argv is None else argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchannel_project.settings")
    from channels_api.config import ENV_CONFIG_FILE
    from channels_api.management.cli import LISTING_ARGS, command_listing, take_config_file

    if argv[1:] in LISTING_ARGS:
        # Without the settings: a broken configuration must not hide how to use the command.
        sys.stdout.write(command_listing(os.path.basename(argv[0]) if argv else "webchannel"))
        return
    config_file, argv = take_config_file(argv)
    if config_file is not None:
        os.environ[ENV_CONFIG_FILE] = config_file
    from django.core.management import execute_from_command_line

    execute_from_command_line(argv)
