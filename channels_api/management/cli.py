"""The command line around Django: the config file named in argv, the list of webchannel's
commands, and how a config error ends the process.

Django loads the settings, and so the configuration, before any command parses its own
arguments. So ``manage.py`` and the ``webchannel`` script take ``-c PATH`` / ``--config-file
PATH`` out of argv first (:func:`take_config_file`) and export it as ``WC_CONFIG_FILE``: the
option works the same for every command, Django's own included. Two commands differ:

- ``shell`` takes ``--config-file`` only: its ``-c CODE`` stays Django's (run CODE and exit),
  as scripts that publish with ``manage.py shell -c ...`` expect.
- ``genconfig`` writes a configuration and reads none: ``-c`` there is refused, pointing to ``-o``.

This module imports nothing from Django, Twisted or Daphne at import time.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

SHORT_OPTION = "-c"
LONG_OPTION = "--config-file"
OWN_SHORT_C = ("shell",)
"""Commands whose ``-c`` is their own (Django's ``shell -c COMMAND``): ``--config-file`` only."""
READS_NO_CONFIG = ("genconfig",)
"""Commands that read no configuration: ``-c`` / ``--config-file`` there is a mistake."""
LISTED_COMMANDS = ("serve", "runserver", "genconfig", "check", "shell")
"""What ``webchannel`` alone lists, in this order: the commands of ``channels_api.management``.
Django's others (``migrate``, ``dbshell``, ...) still run but mean nothing here (no database)."""
LISTING_ARGS: tuple[list[str], ...] = ([], ["help"], ["--help"], ["-h"])
"""The arguments that ask for the list of commands."""


def take_config_file(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """``argv`` without its ``-c PATH``, ``-cPATH``, ``--config-file PATH`` or
    ``--config-file=PATH`` (the last one given wins, as with argparse), and that PATH.

    Options after ``--`` are the command's arguments, untouched. A ``-c`` without a value is
    left for the command's parser to refuse.
    """
    argv = list(argv)
    if len(argv) < 2:
        return None, argv
    command, args = argv[1], argv[2:]
    short = command not in OWN_SHORT_C
    path: str | None = None
    kept: list[str] = argv[:2]
    i = 0
    while i < len(args):
        if args[i] == "--":
            kept += args[i:]
            break
        value, used = _option(args[i], args[i + 1] if i + 1 < len(args) else None, short=short)
        if used:
            path = value
        else:
            kept.append(args[i])
        i += used or 1
    if path is not None and command in READS_NO_CONFIG:
        exit_with_usage_error(
            f"{command} writes a configuration and reads none: write it to a file with -o FILE (not -c)"
        )
    return path, kept


def _option(arg: str, following: str | None, *, short: bool) -> tuple[str | None, int]:
    """The config file ``arg`` (and ``following``) name, and how many of the two that takes (0: none)."""
    if arg == LONG_OPTION or (short and arg == SHORT_OPTION):
        if following is None or following.startswith("-"):
            return None, 0  # argparse would refuse it: let the command's parser say so
        return following, 2
    if arg.startswith(LONG_OPTION + "="):
        return arg.split("=", 1)[1], 1
    if short and arg.startswith(SHORT_OPTION) and len(arg) > 2 and not arg.startswith("--"):
        return arg[3:] if arg[2] == "=" else arg[2:], 1  # -cPATH, and -c=PATH as argparse reads it
    return None, 0


class _TakenBeforeSettings(argparse.Action):
    """Reached only when :func:`take_config_file` did not take the option: an abbreviation such
    as ``--config``, or a command run without webchannel's command line. The settings are
    loaded by then, so the file would be silently ignored: refuse instead."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option_string: Any = None) -> None:
        parser.error(
            "the configuration file is read before the settings, by webchannel's command line: "
            "write -c PATH or --config-file PATH in full, or set WC_CONFIG_FILE"
        )


def add_config_file_argument(parser: argparse.ArgumentParser, *, short: bool = True) -> None:
    """Declare ``-c`` / ``--config-file`` so that a command's ``--help`` shows it (``short=False``:
    ``--config-file`` only). :func:`take_config_file` has already taken it out of argv."""
    flags = (SHORT_OPTION, LONG_OPTION) if short else (LONG_OPTION,)
    parser.add_argument(
        *flags,
        metavar="PATH",
        action=_TakenBeforeSettings,
        help="TOML configuration file, read before the settings (same as WC_CONFIG_FILE).",
    )


def command_listing(prog: str) -> str:
    """What ``webchannel`` alone prints: webchannel's commands, one line each, and where to go next."""
    from django.core.management import load_command_class

    width = max(map(len, LISTED_COMMANDS))
    lines = [f"Usage: {prog} <command> [options]", "", "Commands:"]
    for name in LISTED_COMMANDS:
        lines.append(f"  {name.ljust(width)}  {load_command_class('channels_api', name).help}")
    return "\n".join(
        [
            *lines,
            "",
            "Every command but genconfig reads the configuration: -c PATH or --config-file PATH after",
            "the command (shell: --config-file only, its -c runs code), or WC_CONFIG_FILE; WC_* variables",
            "and a .env file override the file.",
            "",
            f"'{prog} help <command>' shows a command's options; '{prog} help --commands' names every",
            "command, Django's own included.",
            "",
        ]
    )


def exit_with_usage_error(message: str) -> NoReturn:
    """Print one line on stderr and exit with status 2 (argparse's status for a usage error)."""
    sys.stderr.write(f"webchannel: {message}\n")
    raise SystemExit(2)


def exit_with_config_error(message: str) -> NoReturn:
    """Print one line on stderr and exit with status 2, without a traceback."""
    sys.stderr.write(f"webchannel: configuration error: {message}\n")
    raise SystemExit(2)
