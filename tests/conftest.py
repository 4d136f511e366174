"""Shared fixtures. The in-process Django under test uses tests/settings.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import RedisServer, ServerProcess, serving


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
