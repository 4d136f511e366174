"""Fixtures for the end-to-end tests in tests/e2e (real processes, loopback only).

The tests are grouped by subject, one package each (``api``, ``subscribe``, ``reliability``,
``hostile``, ``redis``, ``workers``, ``metrics``, ``logs``, ``operations``, ``deploy``,
``tenancy``, ``client``, ``benchmark``; each ``__init__.py`` says what it holds); the fixtures
here serve them all. Helpers shared by the end-to-end tests live in :mod:`tests.e2e.helpers`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import RedisServer, ServerProcess, base_config, serving


@pytest.fixture
def redis_pair(tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two ``manage.py serve`` processes sharing the test's private Redis and one secret."""
    config = base_config(redis={"url": redis_server.url})
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(serving(tmp_path, config, name="a"))
        b = stack.enter_context(serving(tmp_path, config, name="b"))
        yield a, b


@pytest.fixture
def quiet_httpx() -> Iterator[None]:
    """Thousands of requests: httpx's one log line each would bury a failure's report."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)
