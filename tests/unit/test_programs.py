"""The list of programs the suite runs (tests/programs.py) is complete, and what CI reads from it works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest

from tests import programs
from tests.harness import REPO, RedisServer, timeout
from tests.redis_servers import RedisSentinel

_LOOKUP = re.compile(r"""(?:shutil\.which|programs\.(?:find|require)|mark\.needs)\(\s*["']([\w.-]+)["']""")
_PYTHON_TOOLS = {"hadolint"}
"""Installed by pip from requirements-dev.txt, not by Debian."""


def test_every_program_the_tests_look_up_is_listed_with_its_package() -> None:
    looked_up = {
        name: path.relative_to(REPO)
        for path in (REPO / "tests").rglob("*.py")
        for name in _LOOKUP.findall(path.read_text(encoding="utf-8"))
    }
    assert looked_up, "the pattern found no lookups at all: it no longer matches how tests find programs"
    unlisted = {name: str(where) for name, where in looked_up.items() if name not in programs.PROGRAMS}
    assert unlisted.keys() <= _PYTHON_TOOLS, f"add these to tests/programs.py: {unlisted}"


def test_ci_installs_the_listed_packages_and_checks_before_the_tests() -> None:
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    install = script.index("tests/programs.py --missing-packages")
    check = script.index("tests/programs.py --check")
    assert install < check < script.index('bash -c "$test_command"')
    assert "export WEBCHANNEL_REQUIRE_PROGRAMS=1" in script


def test_the_check_names_each_missing_program_and_its_package_on_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    # With nothing on PATH, every program but one found at a fixed path is missing.
    code = "import sys; sys.argv[0] = 'programs.py'; from tests import programs; " + (
        "programs._SYSTEM_PATH = ''; raise SystemExit(programs.main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "--check"],
        cwd=REPO,
        env={"PATH": str(empty)},
        capture_output=True,
        text=True,
        timeout=timeout(30),
        check=False,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "redis-sentinel (Debian package redis-sentinel)" in lines[0]
    assert "nginx (Debian package nginx)" in lines[0]


def test_a_missing_program_skips_a_test_by_name_and_fails_it_when_required(monkeypatch, tmp_path) -> None:
    absent = programs.Program("nginx", "nginx", path=str(tmp_path / "no-nginx"), purpose="a proxy")
    monkeypatch.setitem(programs.PROGRAMS, "nginx", absent)
    monkeypatch.delenv(programs.REQUIRE_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"nginx is not installed \(Debian package nginx\)"):
        programs.require("nginx")
    monkeypatch.setenv(programs.REQUIRE_VARIABLE, "1")
    with pytest.raises(pytest.fail.Exception, match=r"nginx is not installed.*WEBCHANNEL_REQUIRE_PROGRAMS=1"):
        programs.require("nginx")


@pytest.mark.slow
def test_without_redis_sentinel_the_fallback_runs_redis_server_as_a_sentinel(monkeypatch, tmp_path) -> None:
    """``redis-server CONFIG --sentinel``: Redis 7 refuses the configuration file after the option."""
    absent = programs.Program("redis-sentinel", "redis-sentinel", path=str(tmp_path / "none"), purpose="Sentinel")
    monkeypatch.setitem(programs.PROGRAMS, "redis-sentinel", absent)
    master = RedisServer(tmp_path)
    master.start()
    sentinel = RedisSentinel(tmp_path, master)
    try:
        sentinel.start()
        assert sentinel.master_address() == ("127.0.0.1", master.port)
        assert sentinel.proc is not None
        assert Path(cast(list[str], sentinel.proc.args)[0]).name == "redis-server"
    finally:
        sentinel.stop()
        master.stop()
