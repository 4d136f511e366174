"""``manage.py genconfig [-o FILE] [--force]``: a complete, commented configuration with fresh secrets.

The file is rendered from :func:`channels_api.config.keys`, the schema the loader reads, so it
documents exactly the keys ``serve -c`` accepts, each with its help, its environment variable
and its default. Only ``channel.secret_key`` and ``channel.api_keys`` are set (to fresh random
values); every other key is commented out.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_api.config import keys

HEADER = """\
# webchannel configuration, written by `manage.py genconfig`.
#
# It holds the token secret and an API key: keep it private (genconfig creates it with mode 0600).
# Sources, later wins: built-in defaults < this file < environment variables (WC_SECTION__KEY).
#   python manage.py serve -c FILE
# Commented-out keys show their default (or, for keys unset by default, an example value):
# uncomment one to change it. Publishers send the API key in the x-api-key header.
"""

EXAMPLES: dict[str, Any] = {
    "redis.url": "redis://127.0.0.1:6379/0",
    "metrics.auth_username": "prometheus",
    "metrics.auth_password": "change-me",
}
"""What a value looks like, for keys whose default is unset (or an empty list that means unset);
other unset keys get an empty string."""

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal: strings escaped, tuples and lists as arrays."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # TOML reads Python's int, float, inf and nan spellings
    if isinstance(value, str):
        escaped = (_ESCAPES.get(c) or (c if " " <= c != "\x7f" else f"\\u{ord(c):04x}") for c in value)
        return '"' + "".join(escaped) + '"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML spelling for {value!r}")


def render(secret_key: str, api_key: str) -> str:
    """The whole file: every key with its help and environment variable; only the secrets set."""
    chosen: dict[str, Any] = {"channel.secret_key": secret_key, "channel.api_keys": [api_key]}
    lines = [HEADER]
    section = None
    for key in keys():
        if key.section != section:
            section = key.section
            lines.append(f"[{section}]")
        lines += textwrap.wrap(key.help, width=98, initial_indent="# ", subsequent_indent="# ")
        lines.append(f"# env: {key.env_name}")
        if key.dotted in chosen:
            lines.append(f"{key.name} = {toml_value(chosen.pop(key.dotted))}")
        else:
            default = EXAMPLES.get(key.dotted, "" if key.default is None else key.default)
            lines.append(f"# {key.name} = {toml_value(default)}")
        lines.append("")
    if chosen:  # the schema lost a key this command sets: fail loudly rather than write a file without it
        raise CommandError(f"the configuration schema has no {', '.join(chosen)}")
    return "\n".join(lines)


def write_private(path: Path, text: str, *, force: bool) -> None:
    """Write ``text`` to ``path`` with mode 0600, through a temporary file and a rename, so nobody
    ever reads half a file; without ``force`` an existing ``path`` is never replaced."""
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, path)
        else:
            _install_new(tmp, path)
    except FileExistsError:
        raise CommandError(f"{path} exists: not overwritten (use --force to replace it)", returncode=2) from None
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}", returncode=2) from None
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _install_new(tmp: str, path: Path) -> None:
    """Give ``tmp`` the name ``path`` only if nothing has it: a hard link fails on any existing
    name, even one created a moment ago, where a check followed by a rename would not."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if os.path.lexists(path):
            raise FileExistsError(path) from None
        os.replace(tmp, path)


class Command(BaseCommand):
    help = "Print (or write with -o) a complete, commented configuration with a fresh secret key and API key."

    # Generating a file needs nothing from the running configuration; its warnings would be noise.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-o", "--output", metavar="FILE", help="Write to FILE (mode 0600) instead of stdout.")
        parser.add_argument("--force", action="store_true", help="Replace FILE if it exists.")

    def handle(self, *args: Any, **options: Any) -> None:
        text = render(secrets.token_urlsafe(32), secrets.token_urlsafe(24))
        if options["output"] is None:
            self.stdout.write(text, ending="")
            return
        write_private(Path(options["output"]), text, force=options["force"])
        # Where, never what: the secrets stay in the file.
        self.stdout.write(f"wrote {options['output']} (mode 0600: it holds a secret key and an API key)")
