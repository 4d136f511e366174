"""``python manage.py`` and the ``webchannel`` console script, tried as a new user would: the
configuration file on every command that reads it, and what the command alone lists.

Each runs for real from a directory outside the checkout (a relative ``-c`` is relative to it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import non_empty_lines
from tests.harness import REPO, SECRET_KEY, clean_env, console_script, timeout, toml

SHORT_SECRET = "short-secret"  # channels_api.W001: shows that check read the file
FILE_TTL = 4242


@pytest.fixture(params=["manage.py", "webchannel"])
def entry(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """The command line a user types, up to the command name."""
    if request.param == "manage.py":
        return [sys.executable, str(REPO / "manage.py")]
    return [str(console_script(tmp_path / "bin"))]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A working directory with ``wc.toml`` (a short secret, a ttl of its own) and nothing else."""
    directory = tmp_path / "work"
    directory.mkdir()
    (directory / "wc.toml").write_text(toml({"channel": {"secret_key": SHORT_SECRET, "ttl": FILE_TTL}}))
    return directory


def run(entry: list[str], workdir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*entry, *args],
        cwd=workdir,
        env=clean_env(WC_ENV_FILE="", **env),
        capture_output=True,
        text=True,
        timeout=timeout(60),
        check=False,
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = non_empty_lines(result.stdout + result.stderr)
    assert len(lines) == 1, lines
    for text in expected:
        assert text in lines[0], lines[0]


# --- -c / --config-file ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "option", [["-c", "wc.toml"], ["-cwc.toml"], ["--config-file", "wc.toml"], ["--config-file=wc.toml"]]
)
def test_check_deploy_checks_the_file_given_with_c(entry: list[str], workdir: Path, option: list[str]) -> None:
    result = run(entry, workdir, "check", "--deploy", *option)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(channels_api.W001)" in result.stdout + result.stderr, result.stdout + result.stderr


def test_check_without_c_checks_the_built_in_defaults(entry: list[str], workdir: Path) -> None:
    result = run(entry, workdir, "check", "--deploy")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(channels_api.W001)" not in result.stdout + result.stderr


def test_a_missing_config_file_is_one_line_and_status_2_for_any_command(entry: list[str], workdir: Path) -> None:
    for args in (["check", "-c", "missing.toml"], ["shell", "--config-file", "missing.toml", "-c", "print(1)"]):
        assert_one_line_exit_2(run(entry, workdir, *args), "missing.toml", "configuration error")


def test_shell_takes_config_file_and_keeps_its_own_c_for_code(entry: list[str], workdir: Path) -> None:
    code = "from django.conf import settings; print('ttl', settings.WEBCHANNEL.channel.ttl)"
    with_file = run(entry, workdir, "shell", "--config-file", "wc.toml", "-c", code)
    assert with_file.returncode == 0, with_file.stdout + with_file.stderr
    assert f"ttl {FILE_TTL}" in with_file.stdout.splitlines(), with_file.stdout
    without = run(entry, workdir, "shell", "-c", code)
    assert without.returncode == 0, without.stdout + without.stderr
    assert "ttl 3600" in without.stdout.splitlines(), without.stdout


def test_other_commands_read_the_file_too(entry: list[str], workdir: Path) -> None:
    result = run(entry, workdir, "diffsettings", "-c", "wc.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ttl={FILE_TTL}" in result.stdout


def test_the_environment_still_overrides_the_file(entry: list[str], workdir: Path) -> None:
    result = run(entry, workdir, "check", "--deploy", "-c", "wc.toml", WC_CHANNEL__SECRET_KEY=SECRET_KEY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(channels_api.W001)" not in result.stdout + result.stderr


def test_genconfig_refuses_c_and_points_to_o(entry: list[str], workdir: Path) -> None:
    assert_one_line_exit_2(run(entry, workdir, "genconfig", "-c", "new.toml"), "genconfig", "-o FILE")
    assert not (workdir / "new.toml").exists()


def test_an_abbreviated_config_file_option_is_refused_not_ignored(entry: list[str], workdir: Path) -> None:
    result = run(entry, workdir, "check", "--config", "wc.toml")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--config-file PATH in full" in result.stderr


# --- the list of commands ----------------------------------------------------------------------

LISTED = ("serve", "runserver", "genconfig", "check", "shell")
NOT_LISTED = ("migrate", "flush", "dbshell", "makemigrations", "sqlflush", "runworker", "startapp", "testserver")


@pytest.mark.parametrize("args", [[], ["help"], ["--help"], ["-h"]], ids=["alone", "help", "--help", "-h"])
def test_alone_it_lists_webchannels_commands_only(entry: list[str], workdir: Path, args: list[str]) -> None:
    # A broken configuration does not hide the list.
    result = run(entry, workdir, *args, WC_CONFIG_FILE=str(workdir / "missing.toml"))
    assert result.returncode == 0, result.stdout + result.stderr
    commands = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")]
    assert commands == list(LISTED), result.stdout
    for name in NOT_LISTED:
        assert name not in result.stdout
    prog = Path(entry[-1]).name
    assert f"'{prog} help <command>'" in result.stdout


def test_help_for_a_command_and_every_command_still_work(entry: list[str], workdir: Path) -> None:
    check = run(entry, workdir, "help", "check")
    assert check.returncode == 0, check.stderr
    assert "-c PATH, --config-file PATH" in check.stdout
    names = run(entry, workdir, "help", "--commands")
    assert names.returncode == 0, names.stderr
    assert {*LISTED, "migrate", "diffsettings"} <= set(names.stdout.split())
