"""Every program outside Python that the test suite runs, where it is found, and its Debian package.

This list is the one source for three things:

- a test marked ``@pytest.mark.needs("nginx", ...)``, or one that calls :func:`require`, is
  skipped when a program is missing, with a message naming the program and its package, or
  failed instead when ``WEBCHANNEL_REQUIRE_PROGRAMS=1`` (as in CI), where nothing may be
  skipped for that;
- ``.ci/run`` asks ``python3 tests/programs.py --missing-packages`` which Debian packages to
  install, then ``python3 tests/programs.py --check``, which fails with one line naming every
  program still missing, before any test runs;
- ``tests/unit/test_programs.py`` checks that every program the tests look up is listed here.

It imports nothing beyond the standard library: ``.ci/run`` runs it with the system's Python
before the virtualenv exists.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

REQUIRE_VARIABLE = "WEBCHANNEL_REQUIRE_PROGRAMS"
"""Set to 1 (CI does): a missing program fails the tests that need it instead of skipping them."""

_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""Where Debian puts programs; sbin is often not on a user's PATH."""


@dataclass(frozen=True)
class Program:
    """A program the tests run: the name it is looked up by, and the Debian package that has it."""

    name: str
    package: str
    path: str | None = None
    """A fixed path instead of a lookup (Chromium is driven at Debian's own path)."""
    purpose: str = ""

    def find(self) -> str | None:
        """The program's path, or None."""
        if self.path is not None:
            return self.path if os.access(self.path, os.X_OK) else None
        return shutil.which(self.name) or shutil.which(self.name, path=_SYSTEM_PATH)


PROGRAMS: dict[str, Program] = {
    program.name: program
    for program in (
        Program("redis-server", "redis-server", purpose="a private Redis per test"),
        Program("redis-sentinel", "redis-sentinel", purpose="Sentinel failover tests"),
        Program("redis-cli", "redis-tools", purpose="watching what a Redis server is asked"),
        Program("nginx", "nginx", purpose="the shipped reverse-proxy configuration"),
        Program("chromium", "chromium", path="/usr/bin/chromium", purpose="browser tests"),
        Program("openssl", "openssl", purpose="TLS certificates for Redis over TLS"),
        Program("systemd-analyze", "systemd", purpose="verifying the shipped systemd unit"),
        Program("ip", "iproute2", purpose="network namespaces for partition tests"),
    )
}


def find(name: str) -> str | None:
    """The path of the listed program ``name``, or None when it is not installed."""
    return PROGRAMS[name].find()


def required() -> bool:
    return os.environ.get(REQUIRE_VARIABLE) == "1"


def missing_message(name: str) -> str:
    program = PROGRAMS[name]
    return f"{program.name} is not installed (Debian package {program.package}); needed for {program.purpose}"


def require(name: str) -> str:
    """The path of ``name``; else skip the calling test, or fail it under ``WEBCHANNEL_REQUIRE_PROGRAMS=1``."""
    found = find(name)
    if found is not None:
        return found
    import pytest

    if required():
        pytest.fail(f"{missing_message(name)}, and {REQUIRE_VARIABLE}=1")
    pytest.skip(missing_message(name))


def _missing() -> list[Program]:
    return [program for program in PROGRAMS.values() if program.find() is None]


def main(argv: list[str]) -> int:
    """``--missing-packages``: the Debian packages to install, one line; ``--check``: exit 1 with one
    line naming every missing program; ``--list``: every program and where it was found."""
    if argv == ["--missing-packages"]:
        print(" ".join(dict.fromkeys(program.package for program in _missing())))
        return 0
    if argv == ["--check"]:
        missing = _missing()
        if missing:
            names = ", ".join(f"{p.name} (Debian package {p.package})" for p in missing)
            print(f"tests: programs the test suite runs are missing: {names}", file=sys.stderr)
            return 1
        return 0
    if argv == ["--list"]:
        for program in PROGRAMS.values():
            print(f"{program.name:16} {program.package:16} {program.find() or '(missing)'}")
        return 0
    print(f"usage: {Path(sys.argv[0]).name} --missing-packages | --check | --list", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
