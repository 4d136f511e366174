"""The code stays ruff-clean, formatted and type-checked (the same commands the README gives)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["ruff", "check", "."], id="ruff-check"),
        pytest.param(["ruff", "format", "--check", "."], id="ruff-format"),
        pytest.param(
            ["mypy", "channels_api", "webchannel_project", "webchannel_client", "manage.py", "tests"],
            id="mypy",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_tool_reports_no_problems(command):
    result = subprocess.run(
        [str(BIN / command[0]), *command[1:]], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
