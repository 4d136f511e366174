"""Shared fixtures and the markers every test gets from its directory.

The in-process Django under test uses tests/settings.py. A test's layer is where it lives:
everything under ``tests/e2e/`` is marked ``e2e`` and everything under ``tests/browser/``
``browser`` here, in one place, so no file states it by hand; per-test facts (``slow``,
``needs(...)``) stay on the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import programs
from tests.harness import RedisServer, ServerProcess, serving

TESTS = Path(__file__).resolve().parent
DIRECTORY_MARKERS = {"e2e": pytest.mark.e2e, "browser": pytest.mark.browser}
"""The marker of every test under ``tests/<directory>/``."""


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its directory's marker (``tests/e2e/...`` → ``e2e``)."""
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(TESTS):
            marker = DIRECTORY_MARKERS.get(path.relative_to(TESTS).parts[0])
            if marker is not None:
                item.add_marker(marker)


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
