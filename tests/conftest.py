"""Shared fixtures. The in-process Django under test uses tests/settings.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import programs
from tests.harness import RedisServer, ServerProcess, serving


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``needs("nginx", ...)`` is skipped (or, in CI, failed) by name without them."""
    for mark in item.iter_markers("needs"):
        for name in mark.args:
            programs.require(name)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private, empty Redis on a free port, killed after the test."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One `manage.py serve` (in-process layer) shared by tests that do not change its config."""
    with serving(tmp_path_factory.mktemp("shared-server")) as server:
        yield server
