"""channels_api.server.metric_files: dead workers' values archived exactly, directories removed by the last one out.

The "workers" here are short Python processes that count into a directory as prometheus_client's
multiprocess mode does under ``serve --workers`` (their values in files named after their pid).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from channels_api.metric_files import LOCK, PREFIX, MetricsDirectory, scraping, sweep
from tests.harness import timeout

WORKER = textwrap.dedent(
    """
    import sys
    from prometheus_client import Counter, Gauge, Histogram
    n = int(sys.argv[1])
    things = Counter("things", "Things.", ["kind"])
    things.labels(kind="a").inc(n)
    things.labels(kind=f"k{n % 2}").inc(10 * n)
    Histogram("lag_seconds", "Lag.", buckets=(0.1, 1.0)).observe(0.5 * n)
    Gauge("open", "Open.", multiprocess_mode="livesum").set(n)
    print(__import__("os").getpid())
    """
)


def run_worker(directory: str, n: int) -> int:
    """A process that counts ``n`` of everything into ``directory``, and exits; its pid."""
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(n)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory},
        capture_output=True,
        check=True,
        timeout=timeout(30),
    )
    return int(done.stdout)


def scrape(directory: str) -> str:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    with scraping(directory):
        return generate_latest(registry).decode()


def without_gauges(text: str) -> list[str]:
    """The lines of a scrape, but those of the live gauge (which a dead worker leaves)."""
    return sorted(line for line in text.splitlines() if line and "open" not in line.split(" ", 3)[:3])


def value_files(directory: str) -> list[str]:
    return sorted(path.name for path in Path(directory).glob("*.db"))


def test_a_dead_workers_values_move_to_the_archive_and_every_total_stays_the_same(tmp_path: Path) -> None:
    directory = MetricsDirectory.create(str(tmp_path))
    try:
        pids = [run_worker(directory.path, n) for n in (1, 2, 3)]
        before = scrape(directory.path)
        assert 'things_total{kind="a"} 6.0' in before
        for pid in pids:
            directory.archive(pid)
            assert without_gauges(scrape(directory.path)) == without_gauges(before)
        assert value_files(directory.path) == ["counter_archive.db", "histogram_archive.db"]
        after = scrape(directory.path)
        assert 'lag_seconds_bucket{le="0.1"} 0.0' in after  # 0.5, 1.0 and 1.5 were observed (sums of halves are exact)
        assert 'lag_seconds_bucket{le="1.0"} 2.0' in after
        assert 'lag_seconds_bucket{le="+Inf"} 3.0' in after
        assert "lag_seconds_count 3.0" in after
        assert 'things_total{kind="k0"} 20.0' in after
        assert 'things_total{kind="k1"} 40.0' in after
        assert "\nopen " not in after  # the dead workers' open sockets are gone
        # A worker that comes later adds to the archive, and is archived in turn.
        later = run_worker(directory.path, 4)
        directory.archive(later)
        assert 'things_total{kind="a"} 10.0' in scrape(directory.path)
        assert value_files(directory.path) == ["counter_archive.db", "histogram_archive.db"]
    finally:
        directory.leave()


def test_the_directory_is_removed_by_whoever_leaves_it_last(tmp_path: Path) -> None:
    supervisor = MetricsDirectory.create(str(tmp_path))
    first = MetricsDirectory.join(supervisor.path)
    second = MetricsDirectory.join(supervisor.path)
    assert first is not None
    assert second is not None
    assert not first.leave()  # the supervisor and the second worker still hold it
    assert not supervisor.leave()  # the second worker still holds it
    assert Path(supervisor.path).is_dir()
    assert second.leave()
    assert not Path(supervisor.path).exists()
    assert MetricsDirectory.join(supervisor.path) is None  # a worker that starts too late exits


def test_a_sweep_removes_only_directories_nobody_holds(tmp_path: Path) -> None:
    held = MetricsDirectory.create(str(tmp_path))
    # A supervisor killed as a whole (SIGKILL to its group): its lock file stays, nobody holds it.
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; from channels_api.metric_files import MetricsDirectory;"
            "d = MetricsDirectory.create(sys.argv[1]); print(d.path); sys.stdout.flush(); os._exit(0)",
            str(tmp_path),
        ],
        capture_output=True,
        check=True,
        text=True,
        timeout=timeout(30),
    ).stdout.strip()
    being_made = tmp_path / f"{PREFIX}new"  # made by a supervisor that has not locked it yet
    being_made.mkdir()
    unrelated = tmp_path / "webchannel-other"
    unrelated.mkdir()
    try:
        assert (Path(killed) / LOCK).is_file()
        assert sweep(str(tmp_path)) == [killed]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [Path(held.path).name, being_made.name, unrelated.name]
        )
        # A supervisor starting sweeps before it makes its own.
        again = MetricsDirectory.create(str(tmp_path))
        assert Path(held.path).is_dir()
        assert again.leave()
    finally:
        held.leave()
