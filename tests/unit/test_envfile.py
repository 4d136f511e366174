"""channels_api.envfile and load_config's env_file: .env variables, read with django-environ,
count as environment variables below the process environment, validated alike, errors naming the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from channels_api.config import load_config
from channels_api.envfile import EnvFile, parse_env_file, read_env_file
from channels_api.exceptions import ConfigError

SECRET = "env-file-secret-0123456789abcdef0123"


def env_file(tmp_path: Path, text: str | bytes, name: str = ".env") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def config_error(environ: dict[str, str], dotenv: EnvFile | None, path: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ, dotenv)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- which file --------------------------------------------------------------------------------------


def test_no_file_and_no_variable_means_no_env_file(tmp_path):
    assert read_env_file({}, str(tmp_path)) is None


def test_dot_env_in_the_working_directory_is_read(tmp_path):
    env_file(tmp_path, "WC_CHANNEL__TTL=60\n")
    found = read_env_file({}, str(tmp_path))
    assert found == EnvFile(".env", {"WC_CHANNEL__TTL": "60"})


def test_wc_env_file_names_the_file_instead(tmp_path):
    env_file(tmp_path, "WC_CHANNEL__TTL=60\n")
    other = env_file(tmp_path, "WC_CHANNEL__TTL=70\n", "prod.env")
    assert read_env_file({"WC_ENV_FILE": str(other)}, str(tmp_path)) == EnvFile(str(other), {"WC_CHANNEL__TTL": "70"})


def test_a_relative_wc_env_file_is_relative_to_the_working_directory(tmp_path):
    env_file(tmp_path, "WC_CHANNEL__TTL=70\n", "prod.env")
    found = read_env_file({"WC_ENV_FILE": "prod.env"}, str(tmp_path))
    assert found is not None
    assert found.values == {"WC_CHANNEL__TTL": "70"}


def test_an_empty_wc_env_file_turns_dot_env_off(tmp_path):
    env_file(tmp_path, "WC_CHANNEL__TTL=60\n")
    assert read_env_file({"WC_ENV_FILE": ""}, str(tmp_path)) is None


def test_a_missing_wc_env_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match=r"^/nowhere/prod\.env: cannot read env file: "):
        read_env_file({"WC_ENV_FILE": "/nowhere/prod.env"}, str(tmp_path))


def test_a_directory_named_dot_env_is_not_read(tmp_path):
    (tmp_path / ".env").mkdir()
    assert read_env_file({}, str(tmp_path)) is None


def test_a_non_utf8_file_is_an_error_naming_it(tmp_path):
    env_file(tmp_path, b"WC_CHANNEL__SECRET_KEY=caf\xe9\n")
    with pytest.raises(ConfigError, match=r"^\.env: cannot read env file: not UTF-8 text$"):
        read_env_file({}, str(tmp_path))


# --- what a file may hold ---------------------------------------------------------------------------


def test_comments_blank_lines_export_and_quotes_as_django_environ_reads_them():
    text = (
        "# a comment\n"
        "\n"
        "   \n"
        "  # an indented comment\n"
        "export WC_CHANNEL__TTL=60\n"
        "WC_CHANNEL__API_KEYS='key-one-1,key-two-2'\n"
        'WC_CHANNEL__SECRET_KEY="with # hash"\n'
        "WC_REDIS__URL=redis://h:1/0 # not a comment\n"
        "OTHER_TOOL=x\n"
        "WC_CHANNEL__TTL=61\n"
    )
    assert parse_env_file(".env", text) == {
        "WC_CHANNEL__TTL": "61",
        "WC_CHANNEL__API_KEYS": "key-one-1,key-two-2",
        "WC_CHANNEL__SECRET_KEY": "with # hash",
        "WC_REDIS__URL": "redis://h:1/0 # not a comment",
        "OTHER_TOOL": "x",
    }


@pytest.mark.parametrize(
    "line",
    ["WC_CHANNEL__TTL = 60", "WC_CHANNEL__SECRET_KEY s3cr3t-value", "export  WC_X=1", "WC-CHANNEL=1", " WC_A=1"],
)
def test_a_line_that_is_no_assignment_is_an_error_naming_the_line_not_its_text(line):
    with pytest.raises(ConfigError) as info:
        parse_env_file("deploy/.env", f"# ok\n{line}\n")
    message = str(info.value)
    assert message.startswith("deploy/.env:2: expected NAME=value")
    assert "s3cr3t" not in message
    assert "60" not in message


def test_reading_a_file_leaves_os_environ_alone(tmp_path):
    env_file(tmp_path, "WC_TEST_ENVFILE_PROBE__X=1\n")
    read_env_file({}, str(tmp_path))
    assert "WC_TEST_ENVFILE_PROBE__X" not in os.environ


# --- in load_config --------------------------------------------------------------------------------


def dotenv(**values: str) -> EnvFile:
    return EnvFile(".env", values)


def test_file_values_configure_like_environment_variables():
    config = load_config(None, {}, dotenv(WC_CHANNEL__TTL="60", WC_CHANNEL__API_KEYS="key-one-1,key-two-2"))
    assert config.channel.ttl == 60
    assert config.channel.api_keys == ("key-one-1", "key-two-2")


def test_the_process_environment_wins_over_the_file():
    config = load_config(
        None, {"WC_CHANNEL__TTL": "70"}, dotenv(WC_CHANNEL__TTL="60", WC_CHANNEL__MAX_MESSAGE_SIZE="9")
    )
    assert config.channel.ttl == 70
    assert config.channel.max_message_size == 9


def test_a_bad_file_value_the_environment_overrides_is_not_used():
    assert load_config(None, {"WC_CHANNEL__TTL": "70"}, dotenv(WC_CHANNEL__TTL="abc")).channel.ttl == 70


def test_the_file_wins_over_the_toml_file(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[channel]\nttl = 50\n")
    assert load_config(str(toml), {}, dotenv(WC_CHANNEL__TTL="60")).channel.ttl == 60


def test_a_bad_value_names_the_file_and_the_variable():
    message = config_error({}, dotenv(WC_CHANNEL__TTL="abc"))
    assert message == ".env: WC_CHANNEL__TTL: expected an integer, got 'abc'"


def test_a_bad_value_in_a_named_file_names_that_file():
    message = config_error({}, EnvFile("/etc/webchannel.env", {"WC_SERVER__LISTEN_ADDRESS": "nowhere"}))
    assert message.startswith("/etc/webchannel.env: WC_SERVER__LISTEN_ADDRESS: expected HOST:PORT")


def test_an_unknown_wc_variable_in_the_file_is_an_error():
    assert config_error({}, dotenv(WC_CHANEL__TTL="60")) == ".env: WC_CHANEL__TTL: unknown configuration variable"


def test_other_variables_in_the_file_are_ignored():
    assert load_config(None, {}, dotenv(DATABASE_URL="x", WC_ENV_FILE="y", WCX="z")).channel.ttl == 3600


def test_a_secret_from_the_file_is_never_shown():
    message = config_error({}, dotenv(WC_CHANNEL__API_KEYS="good-key,bad s3cr3t"))
    assert message.startswith(".env: WC_CHANNEL__API_KEYS: expected")
    assert "s3cr3t" not in message


def test_a_rule_across_keys_names_the_file():
    message = config_error({}, dotenv(WC_REDIS__URL="redis://127.0.0.1:6379/0"))
    assert message.startswith(".env: WC_REDIS__URL: channel.secret_key must be set")


def test_wc_log_from_the_file_is_used_and_checked():
    assert load_config(None, {}, dotenv(WC_LOG="debug")).log.level == "DEBUG"
    assert config_error({}, dotenv(WC_LOG="loud")).startswith(".env: WC_LOG: cannot read 'loud'")
    assert load_config(None, {"WC_LOG": "error"}, dotenv(WC_LOG="debug")).log.level == "ERROR"


def test_wc_config_file_from_the_file_is_used(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[channel]\nttl = 55\n")
    assert load_config(None, {}, dotenv(WC_CONFIG_FILE=str(toml))).channel.ttl == 55
    assert load_config(None, {"WC_CONFIG_FILE": ""}, dotenv(WC_CONFIG_FILE=str(toml))).channel.ttl == 3600


def test_without_a_file_load_config_is_unchanged():
    assert load_config(None, {"WC_CHANNEL__SECRET_KEY": SECRET}).channel.secret_key == SECRET
