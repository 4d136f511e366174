"""``/metrics`` under ``serve --workers 2``: any worker's scrape describes the whole server.

Counters are summed over the workers (also over a worker that died), never go backwards, and
``webchannel_users_connected`` is the total of the live workers. Every request here uses a new
connection, so the kernel spreads them over both workers; the access log (its ``[pid]``) shows
which worker took each one.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.e2e.helpers import closed_with, create_channel, recv_binary, subscribe
from tests.harness import REQUIRED_METRIC_NAMES, RedisServer, ServerProcess, base_config, run_serve, timeout, wait_for

pytestmark = pytest.mark.slow

SUBSCRIBERS = 3
PUBLISHES = 20
SCRAPES = 10
_ACCESS_PID = re.compile(r"\[(\d+)\] webchannel\.access")
_STARTED = re.compile(r"worker (\d+) started")


def _sample(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} is not in the scrape:\n{text}"
    return float(match.group(1))


class Scraper:
    """Scrapes on a new connection each; fails as soon as a counter goes backwards."""

    NAMES = (
        "webchannel_users_connected",
        "webchannel_messages_published_total",
        "webchannel_messages_sent_total",
        "webchannel_messages_sent_bytes_total",
    )

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.last: dict[str, float] = {}

    def __call__(self) -> dict[str, float]:
        """One scrape: the totals this test checks."""
        response = httpx.get(f"{self.server.url}/metrics", timeout=timeout(10))
        assert response.status_code == 200, response.text
        values = {name: _sample(response.text, name) for name in self.NAMES}
        assert not [name for name in REQUIRED_METRIC_NAMES if name not in response.text], response.text
        for name, value in values.items():
            if name.endswith("_total"):
                assert value >= self.last.get(name, 0), f"{name} went from {self.last[name]} to {value}"
        self.last = values
        return values


def _pids(server: ServerProcess, marker: str) -> list[int]:
    """The workers that logged the access lines containing ``marker``, in order."""
    return [
        int(match.group(1))
        for line in server.output().splitlines()
        if marker in line and (match := _ACCESS_PID.search(line))
    ]


def _started_workers(server: ServerProcess) -> list[int]:
    return [int(pid) for pid in _STARTED.findall(server.output())]


def _exactly_started(server: ServerProcess, count: int) -> list[int] | None:
    """The started workers, once exactly ``count`` have started."""
    started = _started_workers(server)
    return started if len(started) == count else None


async def _subscribers_on_both_workers(
    server: ServerProcess, stack: contextlib.AsyncExitStack, channel_id: str, token: str
) -> list[tuple[int, ClientConnection]]:
    """``SUBSCRIBERS`` open subscribers, not all on one worker (an extra one on the same worker is closed)."""
    kept: list[tuple[int, ClientConnection]] = []
    for _ in range(30):
        before = len(_pids(server, '" connected'))
        connection = subscribe(server.url, channel_id, token)
        ws = await connection.__aenter__()

        def new_pids(b: int = before) -> list[int]:
            return _pids(server, '" connected')[b:]

        pid = wait_for(new_pids, 5, "the subscriber's access line")[0]
        if len(kept) == SUBSCRIBERS - 1 and {p for p, _ in kept} == {pid}:
            await connection.__aexit__(None, None, None)
            continue
        stack.push_async_exit(connection)
        kept.append((pid, ws))
        if len(kept) == SUBSCRIBERS:
            return kept
    raise AssertionError("the kernel never handed a subscriber to the second worker")


def _consecutive_scrapes(scrape: Scraper, expected: Mapping[str, float]) -> None:
    for i in range(SCRAPES):
        assert scrape() == expected, f"scrape {i + 1} of {SCRAPES}"


def _scraped(server: ServerProcess, pids: set[int]) -> bool:
    return pids <= set(_pids(server, "GET /metrics"))


async def test_one_scrape_of_any_worker_shows_the_whole_server(tmp_path: Path, redis_server: RedisServer) -> None:
    server = run_serve(tmp_path, base_config(redis={"url": redis_server.url}), args=["--workers", "2"])
    try:
        server.wait_listening()
        workers = wait_for(lambda: _exactly_started(server, 2), 20, "2 workers")
        channel_id, token = create_channel(server.url)
        async with contextlib.AsyncExitStack() as stack:
            subscribers = await _subscribers_on_both_workers(server, stack, channel_id, token)
            headers = {"authorization": f"Bearer {token}", "content-type": "application/octet-stream"}
            for seq in range(PUBLISHES):
                url = f"{server.url}/webchannel/v1/channels/{channel_id}"
                response = httpx.post(url, content=b"m%02d" % seq, headers=headers, timeout=timeout(10))
                assert response.status_code == 204, response.text
            for _, ws in subscribers:
                assert [await recv_binary(ws) for _ in range(PUBLISHES)] == [b"m%02d" % s for s in range(PUBLISHES)]
            assert set(_pids(server, '"POST /webchannel/v1/channels/')) == set(workers), "publishes on one worker"

            expected = {
                "webchannel_users_connected": SUBSCRIBERS,
                "webchannel_messages_published_total": PUBLISHES,
                "webchannel_messages_sent_total": SUBSCRIBERS * PUBLISHES,
                "webchannel_messages_sent_bytes_total": SUBSCRIBERS * PUBLISHES * 3,
            }
            # Delivery counts reach the shared totals within the flush interval.
            scrape = Scraper(server)
            wait_for(lambda: scrape() == expected and _scraped(server, set(workers)), 5, "both workers to show it")
            _consecutive_scrapes(scrape, expected)

            # A worker dies with subscribers on it: its sockets leave the gauge, its counts stay.
            victim = subscribers[0][0]
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: len(_started_workers(server)) == 3, 20, "the replacement worker")
            expected["webchannel_users_connected"] = sum(1 for pid, _ in subscribers if pid != victim)
            survivor, replacement = next(pid for pid in workers if pid != victim), _started_workers(server)[-1]
            wait_for(
                lambda: scrape() == expected and _scraped(server, {survivor, replacement}),
                10,
                f"the survivor and the replacement to show {expected}",
            )
            _consecutive_scrapes(scrape, expected)
            directory = _metrics_directory(survivor)
            assert directory.is_dir()
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.output()
    assert not directory.exists(), "the supervisor left its metrics directory behind"
    assert "Traceback" not in server.output(), server.output()


def _metrics_directory(pid: int) -> Path:
    """The directory a worker's metric files are in, from its environment."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    values = [item.split(b"=", 1)[1] for item in environ if item.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    assert values, "the worker has no PROMETHEUS_MULTIPROC_DIR"
    return Path(os.fsdecode(values[0]))


def test_single_process_serve_needs_no_metrics_directory(tmp_path: Path) -> None:
    """Without workers the values stay in memory, and the scrape has the process's own metrics too."""
    server = run_serve(tmp_path, base_config())
    try:
        server.wait_listening()
        text = httpx.get(f"{server.url}/metrics", timeout=timeout(10)).text
        assert _sample(text, "webchannel_users_connected") == 0
        assert _sample(text, "webchannel_messages_sent_total") == 0
        assert "process_open_fds" in text
    finally:
        server.stop()


async def test_a_worker_that_drains_counted_every_delivery_it_made(tmp_path: Path, redis_server: RedisServer) -> None:
    """Its last deliveries reach the shared totals when it stops, not only at the next flush."""
    config = base_config(redis={"url": redis_server.url}, server={"drain_window": 1})
    server = run_serve(tmp_path, config, args=["--workers", "2"])
    try:
        server.wait_listening()
        wait_for(lambda: len(_started_workers(server)) == 2, 20, "2 workers")
        channel_id, token = create_channel(server.url)
        async with subscribe(server.url, channel_id, token) as ws:
            worker = wait_for(lambda: _pids(server, '" connected'), 5, "the subscriber's access line")[0]
            headers = {"authorization": f"Bearer {token}", "content-type": "application/octet-stream"}
            for seq in range(PUBLISHES):
                url = f"{server.url}/webchannel/v1/channels/{channel_id}"
                response = httpx.post(url, content=b"m%02d" % seq, headers=headers, timeout=timeout(10))
                assert response.status_code == 204, response.text
            assert [await recv_binary(ws) for _ in range(PUBLISHES)] == [b"m%02d" % s for s in range(PUBLISHES)]
            os.kill(worker, signal.SIGTERM)
            assert await closed_with(ws, 10) == 1012
        wait_for(lambda: f"worker {worker} exited" in server.output(), 10, "the supervisor to see the worker exit")
        expected = {
            "webchannel_users_connected": 0,
            "webchannel_messages_published_total": PUBLISHES,
            "webchannel_messages_sent_total": PUBLISHES,
            "webchannel_messages_sent_bytes_total": PUBLISHES * 3,
        }
        scrape = Scraper(server)
        _consecutive_scrapes(scrape, expected)
    finally:
        server.stop()


_SLOT = re.compile(r"worker (\d+) started \(slot (\d+)\)")
KILLS = 6
LIVE_FILES_PER_WORKER = 3
"""counter_<pid>.db, histogram_<pid>.db and gauge_livesum_<pid>.db."""


def _current_workers(server: ServerProcess) -> dict[int, int]:
    """The pid of each slot's current worker, from the supervisor's log."""
    return {int(slot): int(pid) for pid, slot in _SLOT.findall(server.output())}


def _all_listening(server: ServerProcess) -> bool:
    output = server.output()
    return all(f"[{pid}] daphne.server: Listening on" in output for pid in _current_workers(server).values())


class BackgroundScrapes:
    """Scrapes over and over in a thread, each on a new connection, failing on any counter that goes
    backwards; a scrape cut off by a dying worker is retried."""

    def __init__(self, server: ServerProcess) -> None:
        self.scrape = Scraper(server)
        self.count = 0
        self.failure: BaseException | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        deadline = time.monotonic() + timeout(120)
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                self.scrape()
            except httpx.TransportError:
                continue  # a worker killed with the connection queued for it
            except BaseException as exc:
                self.failure = exc
                return
            self.count += 1

    def __enter__(self) -> BackgroundScrapes:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(timeout(30))


def test_replaced_workers_leave_a_bounded_number_of_metric_files_and_counters_never_go_back(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    server = run_serve(tmp_path, base_config(redis={"url": redis_server.url}), args=["--workers", "2"])
    try:
        server.wait_listening()
        wait_for(lambda: len(_current_workers(server)) == 2, 20, "2 workers")
        directory = _metrics_directory(_current_workers(server)[0])
        channel_id, token = create_channel(server.url)
        headers = {"authorization": f"Bearer {token}", "content-type": "application/octet-stream"}
        url = f"{server.url}/webchannel/v1/channels/{channel_id}"
        published = 0
        files: list[int] = []
        with BackgroundScrapes(server) as scrapes:
            for kill in range(KILLS):
                wait_for(lambda: _all_listening(server), 20, "both workers to listen")
                for _ in range(5):  # each on a new connection: the kernel spreads them over the workers
                    response = httpx.post(url, content=b"m", headers=headers, timeout=timeout(10))
                    assert response.status_code == 204, response.text
                    published += 1
                victim = _current_workers(server)[kill % 2]
                os.kill(victim, signal.SIGKILL)

                def exited(v: int = victim) -> bool:
                    return f"worker {v} exited" in server.output()

                def replaced(v: int = victim) -> bool:
                    return v not in _current_workers(server).values()

                wait_for(exited, 10, "the supervisor to see it")
                wait_for(replaced, 20, "the replacement")
                files.append(len(list(directory.glob("*.db"))))
                assert scrapes.failure is None, scrapes.failure
            wait_for(lambda: scrapes.count > 20, 20, "scrapes alongside the kills")
        assert scrapes.failure is None, scrapes.failure
        # Two live workers' files and one archive per counter and histogram type, however many died.
        assert max(files) <= 2 * LIVE_FILES_PER_WORKER + 2, f"metric files after each kill: {files}"
        final = Scraper(server)()
        assert final["webchannel_messages_published_total"] == published, final
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.output()
    assert not directory.exists(), "the supervisor left its metrics directory behind"
    assert "Traceback" not in server.output(), server.output()
