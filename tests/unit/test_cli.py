"""channels_api.management.cli: the config file named on the command line, found before Django starts."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from channels_api.management.cli import take_config_file
from tests.harness import REPO, timeout


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["manage.py", "serve", "-c", "X.toml"], "X.toml"),
        (["manage.py", "serve", "-cX.toml"], "X.toml"),
        (["manage.py", "serve", "--config-file", "X.toml"], "X.toml"),
        (["manage.py", "serve", "--config-file=X.toml"], "X.toml"),
        (["manage.py", "runserver", "-c", "X.toml"], "X.toml"),
        (["manage.py", "runserver", "127.0.0.1:9000", "--config-file=X.toml"], "X.toml"),
        (["manage.py", "serve", "-v", "2", "-c", "/etc/wc.toml"], "/etc/wc.toml"),
        (["manage.py", "serve"], None),
        (["manage.py", "serve", "-c"], None),
        (["manage.py", "migrate", "-c", "X.toml"], "X.toml"),
        (["manage.py", "check", "--config-file=X.toml"], "X.toml"),
        (["manage.py"], None),
        ([], None),
    ],
)
def test_config_file_from_argv(argv, expected):
    assert take_config_file(argv)[0] == expected


@pytest.mark.parametrize(
    "args",
    [["-c", "a.toml"], ["-ca.toml"], ["--config-file", "a.toml"], ["--config-file=a.toml"], ["-c=a.toml"]],
)
def test_config_file_from_argv_agrees_with_the_command_option(args):
    # manage.py reads the file name before Django; the command parses the same option with
    # argparse. Both must see the same file.
    parser = argparse.ArgumentParser()
    parser.add_argument("-c", "--config-file")
    assert take_config_file(["manage.py", "serve", *args])[0] == parser.parse_args(args).config_file


def test_cli_module_imports_neither_django_nor_twisted_nor_daphne():
    # manage.py uses it before Django reads the settings; Twisted would also install a reactor.
    code = (
        "import sys; import channels_api.management.cli, channels_api.config; "
        "print(sorted(m for m in ('django', 'twisted', 'daphne', 'channels') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout(30), check=True
    )
    assert result.stdout.strip() == "[]", result.stdout
