"""``.env`` files: ``NAME=value`` lines read with django-environ before the configuration is parsed.

The file is the one named by ``WC_ENV_FILE`` (empty: none), else ``./.env`` when it exists.
Its values are handed to :func:`channels_api.config.load_config`, which lets the process
environment win and validates them like environment variables, naming the file in errors.
Nothing is written to ``os.environ``.

django-environ skips a line it cannot read with a logged warning (which would print the
line, perhaps a secret, before logging is set up); here such a line is an error naming the
file and the line number, never its text.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .exceptions import ConfigError

ENV_FILE = "WC_ENV_FILE"
DEFAULT_ENV_FILE = ".env"

_ASSIGNMENT = re.compile(r"\A(?:export )?[A-Za-z_0-9]+=.*\Z")
"""The lines django-environ reads (the same pattern as its ``read_env``)."""


@dataclass(frozen=True)
class EnvFile:
    """The variables of one ``.env`` file, and its path for error messages."""

    path: str
    values: Mapping[str, str] = field(default_factory=dict, repr=False)  # secrets, often


def read_env_file(environ: Mapping[str, str], cwd: str = ".") -> EnvFile | None:
    """The ``.env`` file to use: ``WC_ENV_FILE`` if set (a missing file is an error), else ``./.env`` if any."""
    named = environ.get(ENV_FILE)
    if named is not None:
        if not named:
            return None
        path = named
    else:
        path = DEFAULT_ENV_FILE
        if not os.path.isfile(os.path.join(cwd, path)):
            return None
    return EnvFile(path, parse_env_file(path, _read(path, cwd)))


def _read(path: str, cwd: str) -> str:
    try:
        with open(os.path.join(cwd, path), encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read env file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: cannot read env file: not UTF-8 text") from None


def parse_env_file(path: str, text: str) -> dict[str, str]:
    """The variables ``text`` assigns, read by django-environ; ``path`` names the file in errors.

    Blank lines and ``#`` comment lines are skipped; quotes around a value are removed; a
    ``#`` after a value is part of the value.
    """
    import environ  # django-environ, only when there is a file to read

    lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not _ASSIGNMENT.match(line):
            raise ConfigError(f"{path}:{number}: expected NAME=value (no spaces around '=')")
        lines.append(line)

    class Collected(environ.Env):  # type: ignore[misc]
        ENVIRON: dict[str, str] = {}  # read_env fills the class's ENVIRON: here a fresh dict, not os.environ

    Collected.read_env(io.StringIO("\n".join(lines)), overwrite=True)
    return dict(Collected.ENVIRON)
