"""Nothing a client sends becomes a metric label: made-up methods and paths against a real server.

Each distinct method a client made up used to become a ``method`` label value of the HTTP
metrics, kept for the life of the process: 40 requests grew ``/metrics`` from 330 to 1,150
lines, and one 15,000-character method added 300 KB to every later scrape. Requests go over
raw sockets so the methods are exactly the ones written here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.helpers import CHANNELS, metrics_text, raw_http
from tests.harness import ServerProcess, base_config, serving

pytestmark = pytest.mark.slow

METRICS_AUTH = ("scraper", "scrape-password-123")
LONGEST_METHOD = 15_000
"""Twisted reads a request line of up to 16 KiB: a 15,000-character method is accepted and answered."""
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    user, password = METRICS_AUTH
    config = base_config(metrics={"auth_enabled": True, "auth_username": user, "auth_password": password})
    with serving(tmp_path_factory.mktemp("labels"), config) as server:
        yield server


def scrape(server: ServerProcess) -> list[str]:
    """The series of a scrape: each sample's name and labels, without its value."""
    text = metrics_text(server.url, auth=METRICS_AUTH)
    return [line.rpartition(" ")[0] for line in text.splitlines() if line and not line.startswith("#")]


LABEL_TARGETS = ["/healthz", f"{CHANNELS}/labels", "/no/such/path", "/webchannel/v1/nothing-here"]


def test_made_up_methods_and_paths_add_no_metric_series(server: ServerProcess) -> None:
    # Every series these requests can touch exists after one of each (and one scrape).
    for target in LABEL_TARGETS:
        raw_http(server, "MADEUP", target)
        raw_http(server, "GET", target)
    raw_http(server, "GET", f"/unknown-{uuid.uuid4().hex}")
    scrape(server)  # a scrape is counted after it is answered: the next one shows its series
    before = scrape(server)

    for n in range(40):
        for target in LABEL_TARGETS:
            assert raw_http(server, f"X{n}-{uuid.uuid4().hex}", target).status in (404, 405)
        raw_http(server, "GET", f"/unknown-{n}-{uuid.uuid4().hex}")
    huge = raw_http(server, "M" * LONGEST_METHOD, "/healthz")
    assert huge.status == 405, huge
    after = scrape(server)

    assert len(after) == len(before), sorted(set(after) - set(before))[:5]
    assert set(after) == set(before)
    assert max(len(line) for line in after) < 300
    assert not any("MADEUP" in line or "X0-" in line or "unknown-" in line for line in after)
    methods = set(re.findall(r'method="([^"]*)"', "\n".join(after)))
    assert "other" in methods, methods
    assert methods <= KNOWN_METHODS | {"other"}
    views = set(re.findall(r'view="([^"]*)"', "\n".join(after)))
    assert views <= {"healthz", "publish", "metrics", "<unnamed view>"}, views
