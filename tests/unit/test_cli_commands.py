"""The command line: ``-c`` taken out of argv for every command, the clash with ``shell -c``,
``genconfig`` refusing ``-c``, and what ``webchannel`` alone lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import find_commands, get_commands, load_command_class
from django.core.management.base import CommandError

import channels_api.management
from channels_api.management import cli
from channels_api.management.cli import LISTED_COMMANDS, OWN_SHORT_C, command_listing, take_config_file


@pytest.mark.parametrize(
    "option",
    [["-c", "wc.toml"], ["-cwc.toml"], ["-c=wc.toml"], ["--config-file", "wc.toml"], ["--config-file=wc.toml"]],
)
@pytest.mark.parametrize("command", ["serve", "check", "diffsettings", "runserver", "sendtestemail"])
def test_every_command_gets_the_file_and_argv_without_the_option(command, option):
    argv = ["webchannel", command, "--deploy", *option, "-v", "2"]
    assert take_config_file(argv) == ("wc.toml", ["webchannel", command, "--deploy", "-v", "2"])


def test_the_last_config_file_wins_as_with_argparse():
    assert take_config_file(["manage.py", "check", "-c", "a.toml", "--config-file", "b.toml"]) == (
        "b.toml",
        ["manage.py", "check"],
    )


def test_shells_own_c_runs_code_and_its_config_file_is_the_long_option():
    argv = ["webchannel", "shell", "--config-file", "wc.toml", "-c", "print(1)"]
    assert take_config_file(argv) == ("wc.toml", ["webchannel", "shell", "-c", "print(1)"])
    code_only = ["webchannel", "shell", "-c", "print(1)"]
    assert take_config_file(code_only) == (None, code_only)
    assert take_config_file(["webchannel", "shell", "-cprint(1)"])[0] is None


@pytest.mark.parametrize(
    "args",
    [["-c"], ["-c", "-v", "2"], ["--config-file"], ["--", "-c", "wc.toml"], ["--config", "wc.toml"]],
    ids=["no-value", "option-as-value", "long-no-value", "after-double-dash", "abbreviation"],
)
def test_what_is_not_a_config_file_is_left_for_the_commands_parser(args):
    assert take_config_file(["webchannel", "check", *args]) == (None, ["webchannel", "check", *args])


def test_genconfig_refuses_c_in_one_line_pointing_to_o(capsys):
    with pytest.raises(SystemExit) as exited:
        take_config_file(["webchannel", "genconfig", "-c", "/etc/webchannel/webchannel.toml"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "-o FILE" in err, err
    output_only = ["webchannel", "genconfig", "-o", "wc.toml"]
    assert take_config_file(output_only) == (None, output_only)


def _short_c_owner(parser) -> str | None:
    """The action class of the parser's ``-c``, or None when it has none."""
    for action in parser._actions:
        if "-c" in action.option_strings:
            return type(action).__name__
    return None


def test_no_command_but_shell_has_a_c_of_its_own():
    """A command whose ``-c`` meant something else would lose it to the config file."""
    taken = cli._TakenBeforeSettings.__name__
    clashes = {}
    for name, app in get_commands().items():
        owner = _short_c_owner(load_command_class(app, name).create_parser("webchannel", name))
        if owner not in (None, taken):
            clashes[name] = owner
    assert set(clashes) == set(OWN_SHORT_C), clashes


@pytest.mark.parametrize("command", ["serve", "runserver", "check", "shell"])
def test_commands_that_show_config_file_in_their_help_refuse_an_abbreviation_of_it(command):
    parser = load_command_class("channels_api", command).create_parser("webchannel", command)
    assert "--config-file PATH" in parser.format_help()
    with pytest.raises(CommandError, match="in full"):
        parser.parse_args(["--config", "wc.toml"])


def test_the_listing_names_every_command_of_channels_api_once():
    defined = find_commands(str(Path(channels_api.management.__file__).parent))
    assert sorted(LISTED_COMMANDS) == sorted(defined)


def test_the_listing_gives_each_command_one_short_line_and_says_how_to_get_help():
    text = command_listing("webchannel")
    for name in LISTED_COMMANDS:
        (line,) = [line for line in text.splitlines() if line.startswith(f"  {name} ")]
        assert len(line) <= 110, line
    for name in ("migrate", "flush", "dbshell", "makemigrations", "runworker", "startapp"):
        assert name not in text
    assert "webchannel help <command>" in text
    assert "--config-file" in text
