"""The command line around Django: the config file named in argv, and how a config error ends the process.

``manage.py`` reads ``-c``/``--config-file`` before Django loads the settings (which happens
before any command parses its own arguments), so this module imports nothing from Django,
Twisted or Daphne.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

CONFIG_COMMANDS = ("serve", "runserver")
"""The commands that take ``-c PATH`` / ``--config-file PATH``."""


def config_file_from_argv(argv: Sequence[str]) -> str | None:
    """Find ``-c PATH`` / ``--config-file PATH`` of ``manage.py serve|runserver``, as argparse would."""
    if len(argv) < 2 or argv[1] not in CONFIG_COMMANDS:
        return None
    args = list(argv[2:])
    for i, arg in enumerate(args):
        if arg in ("-c", "--config-file") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(("--config-file=", "-c=")):
            return arg.split("=", 1)[1]  # as argparse reads them
        if arg.startswith("-c") and len(arg) > 2 and not arg.startswith("--"):
            return arg[2:]
    return None


def exit_with_config_error(message: str) -> NoReturn:
    """Print one line on stderr and exit with status 2, without a traceback."""
    sys.stderr.write(f"webchannel: configuration error: {message}\n")
    raise SystemExit(2)
