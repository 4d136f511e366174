"""The benchmark still runs: a quick pass against webchannel, asserting that it worked, never timings.

``python -m bench`` is a benchmark, not a test; this only keeps it from rotting. It runs the
README's command with ``--quick`` (small sizes) against a webchannel the benchmark starts itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO, clean_env, timeout

pytestmark = pytest.mark.slow


def test_quick_benchmark_runs_and_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--targets", "webchannel", "--no-pin", "--out", str(out)],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout(110),
    )
    assert result.returncode == 0, result.stdout + result.stderr

    document = json.loads((out / "results.json").read_text())
    webchannel = document["results"]["webchannel"]
    assert webchannel["integrity"]["passed"], webchannel["integrity"]
    assert set(webchannel) == {"integrity", "latency", "throughput", "fanout", "connections"}
    assert all("error" not in figures for figures in webchannel.values()), webchannel
    assert document["machine"]["cores"] >= 1

    markdown = (out / "results.md").read_text()
    assert "| metric" in markdown
    assert "webchannel" in markdown
