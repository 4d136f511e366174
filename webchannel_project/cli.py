"""The ``webchannel`` console script and ``manage.py``: Django's command line, with the config file set first.

``serve -c FILE`` must be known before Django reads the settings, which happens before the
command parses its own arguments, so ``-c`` is read from argv here and exported as
``WC_CONFIG_FILE``.
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
    from channels_api.management.cli import config_file_from_argv

    config_file = config_file_from_argv(argv)
    if config_file is not None:
        os.environ[ENV_CONFIG_FILE] = config_file
    from django.core.management import execute_from_command_line

    execute_from_command_line(argv)
