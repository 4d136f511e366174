"""The test suite keeps its own layout: end-to-end tests live in subject packages, and the layer
markers come from the directory (tests/conftest.py), never from the test files."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
E2E = TESTS / "e2e"


def test_end_to_end_tests_live_in_subject_packages() -> None:
    flat = sorted(path.name for path in E2E.glob("test_*.py"))
    assert flat == [], f"move these into a subject folder of tests/e2e/: {flat}"
    folders = [path for path in E2E.iterdir() if path.is_dir() and path.name != "__pycache__"]
    missing = sorted(folder.name for folder in folders if not (folder / "__init__.py").exists())
    assert missing == [], f"these folders need an __init__.py: {missing}"


def test_no_test_file_sets_a_layer_marker_by_hand() -> None:
    by_hand = sorted(
        str(path.relative_to(TESTS))
        for path in TESTS.rglob("*.py")
        if path != TESTS / "conftest.py"  # the one place that sets them
        and re.search(r"pytest\.mark\.(e2e|browser)\b", path.read_text(encoding="utf-8"))
    )
    assert by_hand == [], f"the directory gives e2e and browser (tests/conftest.py); remove them from: {by_hand}"
