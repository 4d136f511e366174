"""The metric files of ``serve --workers N``: one directory per server, bounded, never left behind.

prometheus_client's multiprocess mode keeps each process's values in files of its own in the
directory named by ``PROMETHEUS_MULTIPROC_DIR`` (``counter_<pid>.db``, ``histogram_<pid>.db``,
``gauge_livesum_<pid>.db``: the type is what precedes the first ``_``), and a scrape reads every
``*.db`` file there. This module keeps that directory in order:

- **Who is still there.** The supervisor and each worker hold a shared ``flock`` on the
  directory's ``lock`` file for as long as they run (:class:`MetricsDirectory`). Whoever leaves
  and can then lock it exclusively is the last one, and removes the directory: the supervisor
  once its workers have stopped, or, when the supervisor was killed (SIGKILL), the last of its
  workers to finish draining. A starting supervisor also removes the ``webchannel-metrics-*``
  directories beside its own whose ``lock`` nobody holds: servers killed as a whole. The
  ``lock`` file only appears once its creator holds it, so such a sweep never takes a
  directory still being created for an abandoned one, and leaves alone any directory
  without one.
- **What dead workers counted.** When a worker has exited, the supervisor adds its counters,
  histograms and summaries to ``<type>_archive.db`` and deletes its files
  (:meth:`MetricsDirectory.archive`), so a scrape reads the archive and the live workers'
  files, however many workers were replaced. That happens under an exclusive ``flock`` on
  ``scrape.lock``, which every scrape holds shared (:func:`scraping`): a scrape counts a dead
  worker's values exactly once, from its files or from the archive, so counters never go
  backwards. Its live gauges (its open sockets) are simply dropped.

Relies on these internals of prometheus_client (verified by :mod:`channels_api.fence`;
``INTERNALS`` below): the file names above, ``MultiProcessCollector.merge`` (with
``accumulate=False`` it gives a file's values as stored: per-bucket counts and no
``_count``, so writing them back adds nothing twice) and ``mark_process_dead`` of
``prometheus_client.multiprocess``, and the writer of the file format,
``prometheus_client.mmap_dict.MmapedDict`` (``write_value``, ``close``), with the key of a
value, ``mmap_key``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

INTERNALS = (
    ("prometheus-client", "prometheus_client.mmap_dict", "MmapedDict"),
    ("prometheus-client", "prometheus_client.mmap_dict.MmapedDict", "write_value"),
    ("prometheus-client", "prometheus_client.mmap_dict.MmapedDict", "close"),
    ("prometheus-client", "prometheus_client.mmap_dict", "mmap_key"),
    ("prometheus-client", "prometheus_client.multiprocess.MultiProcessCollector", "merge"),
    ("prometheus-client", "prometheus_client.multiprocess", "mark_process_dead"),
)

logger = logging.getLogger(__name__)

PREFIX = "webchannel-metrics-"
LOCK = "lock"
"""Held shared by every process of the server while it runs."""
SCRAPE_LOCK = "scrape.lock"
"""Held shared by each scrape, exclusively while a dead worker's values move to the archive."""
ARCHIVED_TYPES = ("counter", "histogram", "summary")
"""The file types whose values add up across processes (gauges do not; live ones are dropped)."""
ARCHIVE = "archive"
"""Stands for the pid in the archive's file names: ``counter_archive.db``."""


class MetricsDirectory:
    """One process's place in a server's metrics directory: held while it runs, let go when it ends."""

    def __init__(self, path: str, lock: int) -> None:
        self.path = path
        self._lock: int | None = lock

    @classmethod
    def create(cls, parent: str | None = None) -> MetricsDirectory:
        """In a supervisor: remove abandoned directories, then make and hold a fresh one.

        Fresh, because files left by an earlier run would add their counts to this one's.
        """
        parent = parent or tempfile.gettempdir()
        sweep(parent)
        path = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
        staged = os.path.join(path, f".{LOCK}")
        lock = os.open(staged, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(lock, fcntl.LOCK_SH)
        os.rename(staged, os.path.join(path, LOCK))  # visible to a sweep only once held
        return cls(path, lock)

    @classmethod
    def join(cls, path: str) -> MetricsDirectory | None:
        """In a worker: hold the directory the supervisor made; None if it is gone or going
        (its last holder is removing it: the supervisor and every other worker have ended)."""
        try:
            lock = os.open(os.path.join(path, LOCK), os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            return None
        return cls(path, lock)

    def leave(self) -> bool:
        """Let go; remove the directory if nobody else holds it. True if it was removed."""
        if self._lock is None:
            return False
        lock, self._lock = self._lock, None
        try:
            fcntl.flock(lock, fcntl.LOCK_UN)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # someone is still there; the last one out removes it
            shutil.rmtree(self.path, ignore_errors=True)
            return True
        finally:
            os.close(lock)

    def archive(self, pid: int) -> None:
        """In the supervisor, once worker ``pid`` has exited: drop its live gauges, add what it
        counted to the archive and delete its files."""
        mark_process_dead(pid, self.path)
        dead = [(kind, os.path.join(self.path, f"{kind}_{pid}.db")) for kind in ARCHIVED_TYPES]
        dead = [(kind, path) for kind, path in dead if os.path.exists(path)]
        if not dead:
            return
        with _locked(os.path.join(self.path, SCRAPE_LOCK), fcntl.LOCK_EX):
            for kind, path in dead:
                archive = os.path.join(self.path, f"{kind}_{ARCHIVE}.db")
                sources = [archive, path] if os.path.exists(archive) else [path]
                staged = f"{archive}.new"  # not *.db: no scrape reads it
                _write(staged, MultiProcessCollector.merge(sources, accumulate=False))
                os.replace(staged, archive)
                os.remove(path)


@contextlib.contextmanager
def scraping(path: str) -> Iterator[None]:
    """Around reading the files of ``path`` for a scrape: no archiving meanwhile."""
    with _locked(os.path.join(path, SCRAPE_LOCK), fcntl.LOCK_SH):
        yield


def sweep(parent: str) -> list[str]:
    """Remove the metrics directories in ``parent`` whose ``lock`` nobody holds; return them."""
    removed = []
    for path in sorted(Path(parent).glob(f"{PREFIX}*")):
        try:
            lock = os.open(path / LOCK, os.O_RDWR)
        except OSError:  # none yet (being created), not ours to read, or already gone
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            continue  # a server still runs on it
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(lock)
        removed.append(str(path))
    if removed:
        logger.info("removed %d metrics directories of servers that were killed: %s", len(removed), ", ".join(removed))
    return removed


@contextlib.contextmanager
def _locked(path: str, operation: int) -> Iterator[None]:
    lock = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, operation)
        yield
    finally:
        os.close(lock)  # releases the lock


def _write(path: str, metrics: Iterable[Any]) -> None:
    """``metrics`` (as ``MultiProcessCollector.merge`` gives them) as a new file of values at ``path``."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)  # a leftover of a supervisor killed while writing it
    values = MmapedDict(path)
    try:
        for metric in metrics:
            for sample in metric.samples:
                labels = sample.labels
                key = mmap_key(metric.name, sample.name, list(labels), list(labels.values()), metric.documentation)
                values.write_value(key, sample.value, sample.timestamp or 0.0)
    finally:
        values.close()
