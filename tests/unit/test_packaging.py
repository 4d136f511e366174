"""Packaging metadata: the runtime dependencies are requirements.txt, and the ``client`` extra asks for
what the test suite uses. (``pip install .`` itself is tested in tests/e2e/deploy/test_install.py.)"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from tests.harness import REPO


def requirement_lines(path: Path) -> list[str]:
    """The requirements in a requirements file, without comments and options."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def test_client_extra_matches_the_dev_requirements():
    """The ``client`` extra asks for the same httpx and websockets as the test suite uses."""
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["client"]
    dev = {re.split(r"[<>=~!]", line)[0]: line for line in requirement_lines(REPO / "requirements-dev.txt")}
    assert sorted(extra) == sorted([dev["httpx"], dev["websockets"]])


def test_runtime_dependencies_are_read_from_requirements_txt():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "dependencies" in project["project"]["dynamic"]
    assert "dependencies" not in project["project"]
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"] == {"file": ["requirements.txt"]}
