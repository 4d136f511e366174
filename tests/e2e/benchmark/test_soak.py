"""The soak script in a CI-sized run: ``python -m bench.soak`` as a subprocess.

The full soak holds 5,000 subscribers for 10 minutes; CI runs 1,000 subscribers over 50 channels
for 30 seconds, which takes about 40-50 s on a 2-core machine including connection setup. It
asserts correctness only (every message reached every subscriber of its channel, in order, no
disconnects, no publish errors), never timing: latency depends on the machine.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO, clean_env, timeout

pytestmark = pytest.mark.slow

COMMAND = ["-m", "bench.soak", "--duration", "30", "--subscribers", "1000", "--channels", "50", "--rate", "20"]


@pytest.mark.timeout(timeout(300))
def test_short_soak_delivers_every_message_to_every_subscriber(tmp_path: Path) -> None:
    figures_path = tmp_path / "soak.json"
    command = [sys.executable, *COMMAND, "--report-every", "10", "--json", str(figures_path)]
    result = subprocess.run(
        command, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=timeout(240), check=False
    )
    output = result.stdout + result.stderr

    assert result.returncode == 0, output
    assert re.search(r"^\| lost \| 0 \|$", result.stdout, re.MULTILINE), output
    assert "## webchannel soak: PASS" in result.stdout, output

    figures = json.loads(figures_path.read_text())
    totals = figures["totals"]
    assert figures["passed"] is True
    assert totals["subscribers"] == 1000
    assert totals["sent"] > 0
    assert totals["expected"] == totals["sent"] * 20  # 1000 subscribers over 50 channels, round-robin
    assert totals["delivered"] == totals["expected"]
    assert totals["lost"] == totals["reordered"] == totals["duplicated"] == totals["corrupt"] == 0
    assert totals["disconnected"] == 0
    assert totals["publish_errors"] == totals["connect_errors"] == {}
    assert figures["intervals"], "no progress lines"
