"""channels_api.config: defaults < TOML file < WC_* variables, strict parsing, one-line errors."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from channels_api.config import SECTIONS, Config, keys, load_config, parse_listen_address
from channels_api.exceptions import ConfigError

SECRET = "unit-secret-0123456789abcdef0123456789"
API_KEY = "unit-api-key"
KNOWN = {"WC_CHANNEL__SECRET_KEY": SECRET, "WC_CHANNEL__API_KEYS": API_KEY}
"""Environment with both secrets set, so nothing is generated."""


def write(tmp_path: Path, text: str | bytes, name: str = "config.toml") -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def config_error(path: str | None, environ: dict[str, str]) -> str:
    """The message of the ConfigError that loading raises; checks it is one line."""
    with pytest.raises(ConfigError) as info:
        load_config(path, environ)
    message = str(info.value)
    assert message, "ConfigError without a message"
    assert "\n" not in message, f"not one line: {message!r}"
    assert "\r" not in message, f"not one line: {message!r}"
    return message


def assert_names(message: str, *parts: str) -> None:
    for part in parts:
        assert part in message, f"{part!r} not named in {message!r}"


# --- defaults, precedence, sources ---------------------------------------------------


def test_defaults_without_file_or_environment():
    config = load_config(None, {})
    assert config.server.listen_address == "127.0.0.1:8080"
    assert config.server.cors_origins == ()
    assert config.server.cors_allow_any_origin is False
    assert config.channel.ttl == 3600
    assert config.channel.max_message_size == 524288
    assert config.channel.previous_secret_keys == ()
    assert config.redis.url == ()
    assert config.redis.enabled is False
    assert config.metrics.auth_enabled is False
    assert config.metrics.auth_username is None
    assert config.metrics.auth_password is None
    assert config.server.max_backlog_bytes >= config.channel.max_message_size
    assert config.log.level == "INFO"
    assert config.log.loggers == ()
    assert config.source is None


def test_toml_file_overrides_defaults(tmp_path):
    path = write(
        tmp_path,
        """
[server]
listen_address = "127.0.0.1:9000"
cors_origins = ["https://app.example.com"]
cors_allow_any_origin = true
ping_interval = 5

[channel]
secret_key = "file-secret"
api_keys = ["key-one-1", "key-two-2"]
ttl = 60
max_message_size = 1024

[redis]
url = "redis://127.0.0.1:6390/1"

[metrics]
auth_enabled = true
auth_username = "prom"
auth_password = "pw"
""",
    )
    config = load_config(path, {})
    assert config.server.listen_address == "127.0.0.1:9000"
    assert config.server.cors_origins == ("https://app.example.com",)
    assert config.server.cors_allow_any_origin is True
    assert config.server.ping_interval == 5.0
    assert isinstance(config.server.ping_interval, float)
    assert config.channel.secret_key == "file-secret"
    assert config.channel.api_keys == ("key-one-1", "key-two-2")
    assert config.channel.ttl == 60
    assert config.channel.max_message_size == 1024
    assert config.redis.url == ("redis://127.0.0.1:6390/1",)
    assert (config.metrics.auth_enabled, config.metrics.auth_username, config.metrics.auth_password) == (
        True,
        "prom",
        "pw",
    )
    assert config.source == path
    assert config.generated == ()


def test_environment_overrides_file_and_keeps_the_other_file_values(tmp_path):
    path = write(tmp_path, '[channel]\nttl = 60\nmax_message_size = 1024\nsecret_key = "file-secret"\n')
    config = load_config(path, {"WC_CHANNEL__TTL": "120", "WC_CHANNEL__SECRET_KEY": "env-secret"})
    assert config.channel.ttl == 120
    assert config.channel.secret_key == "env-secret"
    assert config.channel.max_message_size == 1024


def test_environment_overrides_defaults_without_a_file():
    config = load_config(None, {"WC_SERVER__LISTEN_ADDRESS": "127.0.0.1:9001", "WC_CHANNEL__TTL": "7"})
    assert config.server.listen_address == "127.0.0.1:9001"
    assert config.channel.ttl == 7


def test_wc_config_file_is_read_when_no_path_is_given(tmp_path):
    path = write(tmp_path, "[channel]\nttl = 61\n")
    config = load_config(None, {"WC_CONFIG_FILE": path})
    assert config.channel.ttl == 61
    assert config.source == path


def test_explicit_path_wins_over_wc_config_file(tmp_path):
    chosen = write(tmp_path, "[channel]\nttl = 62\n", "chosen.toml")
    other = write(tmp_path, "[channel]\nttl = 63\n", "other.toml")
    assert load_config(chosen, {"WC_CONFIG_FILE": other}).channel.ttl == 62


def test_empty_wc_config_file_means_no_file():
    config = load_config(None, {"WC_CONFIG_FILE": ""})
    assert config.source is None
    assert config.channel.ttl == 3600


def test_empty_toml_file_gives_defaults(tmp_path):
    assert load_config(write(tmp_path, ""), {}).channel.ttl == 3600


# --- lists --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("foo-key-1,bar-key-2", ("foo-key-1", "bar-key-2")),
        ("foo-key-1, bar-key-2", ("foo-key-1", "bar-key-2")),
        ("  foo-key-1 ,  bar-key-2  ", ("foo-key-1", "bar-key-2")),
        ("foo-key-1", ("foo-key-1",)),
        ("foo-key-1,,bar-key-2,", ("foo-key-1", "bar-key-2")),
    ],
)
def test_comma_separated_api_keys_in_environment(text, expected):
    assert load_config(None, {"WC_CHANNEL__API_KEYS": text}).channel.api_keys == expected


def test_comma_separated_cors_origins_in_environment():
    config = load_config(None, {"WC_SERVER__CORS_ORIGINS": "https://a.example, http://b.example:8080"})
    assert config.server.cors_origins == ("https://a.example", "http://b.example:8080")


def test_toml_lists(tmp_path):
    path = write(
        tmp_path,
        '[channel]\napi_keys = ["foo-key-1", "bar-key-2"]\nprevious_secret_keys = ["old-secret-1", "old-secret-2"]\n'
        '[server]\ncors_origins = ["https://a.example", "https://b.example"]\n',
    )
    config = load_config(path, {})
    assert config.channel.api_keys == ("foo-key-1", "bar-key-2")
    assert config.channel.previous_secret_keys == ("old-secret-1", "old-secret-2")
    assert config.server.cors_origins == ("https://a.example", "https://b.example")


LIST_KEYS = [key for key in keys() if key.kind == tuple[str, ...]]
STRICT_LIST_KEYS = [key for key in LIST_KEYS if not key.one_or_list]


@pytest.mark.parametrize("key", STRICT_LIST_KEYS, ids=lambda key: key.dotted)
@pytest.mark.parametrize("text", ["k1,k2", "k1", ""])
def test_a_string_for_a_list_key_in_toml_is_a_type_error(tmp_path, key, text):
    # TOML has arrays; comma-separated text is for environment variables only.
    path = write(tmp_path, f"[{key.section}]\n{key.name} = {text!r}\n".replace("'", '"'))
    message = config_error(path, {})
    assert_names(message, path, key.dotted, "expected a list of strings")


def test_every_list_key_is_covered_by_the_string_check():
    assert {key.dotted for key in STRICT_LIST_KEYS} == {
        "server.allowed_hosts",
        "server.cors_origins",
        "server.trusted_proxies",
        "channel.previous_secret_keys",
        "channel.api_keys",
        "redis.sentinels",
    }
    # A single string is still accepted where a key became a list (tests/unit/test_config_redis.py).
    assert {key.dotted for key in LIST_KEYS if key.one_or_list} == {"redis.url"}


@pytest.mark.parametrize("key", LIST_KEYS, ids=lambda key: key.dotted)
def test_comma_separated_text_for_a_list_key_in_the_environment_is_a_list(key):
    values = {
        "server.allowed_hosts": "a.example,b.example",
        "server.cors_origins": "https://a.example,https://b.example",
        "server.trusted_proxies": "127.0.0.1,10.0.0.0/8",
        "channel.previous_secret_keys": "old-secret-1,old-secret-2",
        "channel.api_keys": "key-one-1,key-two-2",
        "redis.url": "redis://a.example:6379/0,redis://b.example:6379/0",
        "redis.sentinels": "a.example:26379,b.example:26379",
    }
    needs = {"redis.url": KNOWN, "redis.sentinels": {**KNOWN, "WC_REDIS__MASTER_NAME": "m"}}
    config = load_config(None, {**needs.get(key.dotted, {}), key.env_name: values[key.dotted]})
    assert getattr(getattr(config, key.section), key.name) == tuple(values[key.dotted].split(","))


def test_previous_secret_keys_follow_the_signing_key():
    config = load_config(None, {**KNOWN, "WC_CHANNEL__PREVIOUS_SECRET_KEYS": "old-secret-1,old-secret-2"})
    assert config.secret_keys == (SECRET, "old-secret-1", "old-secret-2")


# --- booleans -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("no", False),
        ("on", True),
        ("off", False),
        ("TRUE", True),
        ("False", False),
        (" On ", True),
    ],
)
def test_boolean_words_in_environment(text, expected):
    config = load_config(None, {"WC_SERVER__CORS_ALLOW_ANY_ORIGIN": text})
    assert config.server.cors_allow_any_origin is expected


@pytest.mark.parametrize("text", ["flase", "", "2", "truee", "y", "enabled", "-1"])
def test_garbage_boolean_in_environment_is_an_error(text):
    message = config_error(None, {"WC_SERVER__CORS_ALLOW_ANY_ORIGIN": text})
    assert_names(message, "WC_SERVER__CORS_ALLOW_ANY_ORIGIN", "true or false")


# --- numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("WC_CHANNEL__TTL", "60", 60),
        ("WC_CHANNEL__TTL", " 60 ", 60),
        ("WC_CHANNEL__MAX_MESSAGE_SIZE", "1024", 1024),
        ("WC_SERVER__PING_INTERVAL", "0.5", 0.5),
        ("WC_SERVER__PING_INTERVAL", "3", 3.0),
        ("WC_SERVER__PING_INTERVAL", "1e1", 10.0),
        ("WC_SERVER__DRAIN_WINDOW", "0", 0.0),
    ],
)
def test_numbers_in_environment(name, text, expected):
    config = load_config(None, {name: text})
    section, key = name[3:].lower().split("__")
    value = getattr(getattr(config, section), key)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("WC_CHANNEL__TTL", "12abc"),
        ("WC_CHANNEL__TTL", "1e3"),
        ("WC_CHANNEL__TTL", "12.0"),
        ("WC_CHANNEL__TTL", "nan"),
        ("WC_CHANNEL__TTL", "inf"),
        ("WC_CHANNEL__TTL", ""),
        ("WC_CHANNEL__TTL", "0x10"),
        ("WC_CHANNEL__TTL", "-5"),
        ("WC_CHANNEL__TTL", "0"),
        ("WC_CHANNEL__MAX_MESSAGE_SIZE", "512k"),
        ("WC_CHANNEL__MAX_MESSAGE_SIZE", "0"),
        ("WC_SERVER__MAX_BACKLOG_BYTES", "-1"),
        ("WC_SERVER__PING_INTERVAL", "nan"),
        ("WC_SERVER__PING_INTERVAL", "inf"),
        ("WC_SERVER__PING_INTERVAL", "-inf"),
        ("WC_SERVER__PING_INTERVAL", "1e400"),
        ("WC_SERVER__PING_INTERVAL", "12abc"),
        ("WC_SERVER__PING_INTERVAL", "0"),
        ("WC_SERVER__PING_INTERVAL", "-1.5"),
        ("WC_SERVER__PING_TIMEOUT", ""),
        ("WC_SERVER__DRAIN_WINDOW", "-0.5"),
    ],
)
def test_bad_number_in_environment_is_an_error(name, text):
    message = config_error(None, {name: text})
    assert_names(message, name, "expected")


@pytest.mark.parametrize(
    ("line", "dotted"),
    [
        ("[channel]\nttl = 1.5", "channel.ttl"),
        ("[channel]\nttl = 1e3", "channel.ttl"),
        ('[channel]\nttl = "60"', "channel.ttl"),
        ("[channel]\nttl = true", "channel.ttl"),
        ("[channel]\nttl = -1", "channel.ttl"),
        ("[channel]\nttl = 0", "channel.ttl"),
        ("[channel]\nmax_message_size = 0", "channel.max_message_size"),
        ("[server]\nping_interval = nan", "server.ping_interval"),
        ("[server]\nping_interval = inf", "server.ping_interval"),
        ("[server]\nping_interval = -inf", "server.ping_interval"),
        ("[server]\nping_interval = 0.0", "server.ping_interval"),
        ("[server]\nping_timeout = -3", "server.ping_timeout"),
        ("[server]\nping_timeout = false", "server.ping_timeout"),
        ("[server]\ndrain_window = -1", "server.drain_window"),
    ],
)
def test_bad_number_in_toml_is_an_error(tmp_path, line, dotted):
    path = write(tmp_path, line + "\n")
    assert_names(config_error(path, {}), path, dotted, "expected")


def test_ttl_too_large_for_an_expiry_date_is_an_error(tmp_path):
    # A token's expiry must be a date (the create response carries expiresAt); 10**12 s is
    # about 31,700 years, past datetime's year 9999, so every create would fail.
    ttl = 10**12
    with pytest.raises((OverflowError, ValueError, OSError)):
        datetime.fromtimestamp(time.time() + ttl, UTC)
    message = config_error(write(tmp_path, f"[channel]\nttl = {ttl}\n"), {})
    assert_names(message, "channel.ttl")


# --- wrong types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "line", "dotted", "expected"),
    [
        ("server", "listen_address = 8080", "server.listen_address", "a string"),
        ("server", "listen_address = []", "server.listen_address", "a string"),
        ("channel", 'ttl = "x"', "channel.ttl", "an integer"),
        ("server", 'ping_interval = "x"', "server.ping_interval", "a number"),
        ("server", 'access_log = "yes"', "server.access_log", "true or false"),
        ("server", "cors_allow_any_origin = 1", "server.cors_allow_any_origin", "true or false"),
        ("server", "cors_origins = 5", "server.cors_origins", "a list of strings"),
        ("server", "cors_origins = [1, 2]", "server.cors_origins", "a list of strings"),
        ("server", "cors_origins = {a = 1}", "server.cors_origins", "a list of strings"),
        ("metrics", "auth_username = 5", "metrics.auth_username", "a string"),
        ("metrics", "auth_username = ['a']", "metrics.auth_username", "a string"),
        ("redis", "url = 6379", "redis.url", "a string"),
        ("channel", "secret_key = 1979-05-27T07:32:00Z", "channel.secret_key", "a string"),
    ],
)
def test_wrong_type_in_toml_is_an_error_naming_file_key_and_expected_type(tmp_path, section, line, dotted, expected):
    path = write(tmp_path, f"[{section}]\n{line}\n")
    assert_names(config_error(path, {}), path, dotted, expected)


# --- files that cannot be used -------------------------------------------------------------


def test_missing_file_is_an_error(tmp_path):
    path = str(tmp_path / "nope.toml")
    assert_names(config_error(path, {}), path, "cannot read")


def test_missing_file_from_wc_config_file_is_an_error(tmp_path):
    path = str(tmp_path / "nope.toml")
    assert_names(config_error(None, {"WC_CONFIG_FILE": path}), path)


def test_directory_as_config_file_is_an_error(tmp_path):
    assert_names(config_error(str(tmp_path), {}), str(tmp_path), "cannot read")


@pytest.mark.parametrize(
    "text",
    [
        "[server\n",
        "ttl = \n",
        "[channel]\nttl = 1\nttl = 2\n",
        '[channel]\nsecret_key = "unterminated\n',
        "not toml at all",
        "[server]\n[server]\n",
    ],
)
def test_invalid_toml_is_an_error(tmp_path, text):
    path = write(tmp_path, text)
    assert_names(config_error(path, {}), path, "invalid TOML")


@pytest.mark.parametrize(
    "data", [b"[channel]\nttl = 60\n# caf\xe9\n", b"\xff\xfe[\x00c\x00", b'[channel]\nsecret_key = "\xc3"\n']
)
def test_non_utf8_file_is_an_error(tmp_path, data):
    path = write(tmp_path, data)
    assert_names(config_error(path, {}), path)


def test_integer_too_long_for_python_is_an_error_not_a_crash(tmp_path):
    # tomllib raises a plain ValueError (not TOMLDecodeError) past 4300 digits.
    path = write(tmp_path, "[channel]\nttl = " + "9" * 5000 + "\n")
    assert_names(config_error(path, {}), path)


def test_unknown_section_is_an_error(tmp_path):
    path = write(tmp_path, "[sever]\nlisten_address = '127.0.0.1:1'\n")
    assert_names(config_error(path, {}), path, "sever", "unknown section")


def test_unknown_key_is_an_error(tmp_path):
    path = write(tmp_path, "[channel]\nttll = 60\n")
    assert_names(config_error(path, {}), path, "channel.ttll", "unknown key")


def test_top_level_key_is_an_unknown_section(tmp_path):
    path = write(tmp_path, "ttl = 60\n")
    assert_names(config_error(path, {}), path, "ttl")


@pytest.mark.parametrize("text", ["server = 1\n", 'channel = "x"\n', "[[server]]\nttl = 1\n", "redis = []\n"])
def test_section_that_is_not_a_table_is_an_error(tmp_path, text):
    path = write(tmp_path, text)
    section = re.findall(r"\w+", text)[0]
    assert_names(config_error(path, {}), path, section, "table")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('[channel]\n"tt\\nl" = 60\n', id="key-LF"),
        pytest.param('["ser\\nver"]\nx = 1\n', id="section-LF"),
        pytest.param('[channel]\n"tt\\rl" = 60\n', id="key-CR"),
    ],
)
def test_error_naming_an_unknown_key_with_a_line_break_stays_one_line(tmp_path, text):
    path = write(tmp_path, text)
    config_error(path, {})  # asserts one line


def test_error_naming_an_unknown_variable_with_a_line_break_stays_one_line():
    config_error(None, {"WC_CHANNEL__TT\nL": "60"})


# --- listen addresses ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:80", ("::", 80)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),  # noqa: S104
        ("localhost:9000", ("127.0.0.1", 9000)),
        ("127.0.0.1:65535", ("127.0.0.1", 65535)),
    ],
)
def test_good_listen_address(text, expected):
    assert parse_listen_address(text) == expected
    assert load_config(None, {"WC_SERVER__LISTEN_ADDRESS": text}).server.listen_address == text


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:99999",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:http",
        "host.example:80",
        "::1:80",
        "[127.0.0.1]:80",
        "[::1:80",
        ":80",
        "",
        "256.0.0.1:80",
    ],
)
def test_bad_listen_address(tmp_path, text):
    with pytest.raises(ValueError, match="expected"):
        parse_listen_address(text)
    message = config_error(None, {"WC_SERVER__LISTEN_ADDRESS": text})
    assert_names(message, "WC_SERVER__LISTEN_ADDRESS", "expected")
    path = write(tmp_path, f'[server]\nlisten_address = "{text}"\n')
    assert_names(config_error(path, {}), path, "server.listen_address")


# --- other value rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "*",
        "app.example.com",
        "ftp://app.example.com",
        "https://",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://app.example.com?x=1",
        "",
    ],
)
def test_bad_cors_origin_is_an_error(tmp_path, origin):
    path = write(tmp_path, f'[server]\ncors_origins = ["https://ok.example", "{origin}"]\n')
    assert_names(config_error(path, {}), path, "server.cors_origins")


@pytest.mark.parametrize(
    "origin",
    ["https://app.example.com#frag", "https://user:pw@app.example.com", "https://app.example.com:99999"],
)
def test_cors_origin_that_no_browser_can_send_is_an_error(origin):
    # An Origin header is scheme://host[:port]: such an entry would silently never match.
    assert_names(config_error(None, {"WC_SERVER__CORS_ORIGINS": origin}), "WC_SERVER__CORS_ORIGINS")


@pytest.mark.parametrize(
    "origin", ["https://app.example.com", "http://localhost:3000", "http://127.0.0.1:8080", "https://[::1]:8443"]
)
def test_good_cors_origin(origin):
    assert load_config(None, {"WC_SERVER__CORS_ORIGINS": origin}).server.cors_origins == (origin,)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://cache.example:6380", "unix:///run/redis.sock"])
def test_good_redis_url(url):
    assert load_config(None, {**KNOWN, "WC_REDIS__URL": url}).redis.url == (url,)


@pytest.mark.parametrize(
    "url", ["http://user:hunter2-secret@127.0.0.1:6379", "127.0.0.1:6379", "memcached://x", "redis://[::1"]
)
def test_bad_redis_url_is_an_error_that_hides_the_url(url):
    message = config_error(None, {**KNOWN, "WC_REDIS__URL": url})
    assert_names(message, "WC_REDIS__URL")
    assert url not in message
    assert "hunter2" not in message


def test_empty_allowed_hosts_is_an_error():
    assert_names(config_error(None, {"WC_SERVER__ALLOWED_HOSTS": " , "}), "WC_SERVER__ALLOWED_HOSTS")


# --- environment variable names -----------------------------------------------------------


@pytest.mark.parametrize("name", ["WC_CHANNEL__NOPE", "WC_NOPE__TTL", "WC_CHANNEL__TTL__X", "WC___TTL"])
def test_unknown_wc_section_key_variable_is_an_error(name):
    assert_names(config_error(None, {name: "1"}), name, "unknown")


@pytest.mark.parametrize("name", ["WC_SOMETHING", "WC_CHANNEL_TTL", "wc_channel__ttl", "XWC_CHANNEL__TTL", "PATH"])
def test_variables_that_are_not_wc_section_key_are_ignored(name):
    assert load_config(None, {name: "garbage"}).channel.ttl == 3600


def test_every_key_is_settable_from_its_environment_variable():
    for key in keys():
        assert key.env_name == f"WC_{key.section.upper()}__{key.name.upper()}"
        assert key.section in SECTIONS


# --- rules across keys ----------------------------------------------------------------------


def test_redis_url_without_secret_key_is_an_error(tmp_path):
    path = write(tmp_path, '[redis]\nurl = "redis://127.0.0.1:6379/0"\n')
    message = config_error(path, {})
    assert_names(message, path, "channel.secret_key", "redis.url")
    assert "6379" not in message


def test_redis_url_with_secret_key_is_accepted():
    config = load_config(None, {"WC_REDIS__URL": "redis://127.0.0.1:6379/0", "WC_CHANNEL__SECRET_KEY": SECRET})
    assert config.redis.url == ("redis://127.0.0.1:6379/0",)
    assert "channel.secret_key" not in config.generated


def test_backlog_bound_below_message_size_is_an_error(tmp_path):
    path = write(tmp_path, "[server]\nmax_backlog_bytes = 1000\n[channel]\nmax_message_size = 1001\n")
    assert_names(config_error(path, {}), path, "server.max_backlog_bytes", "channel.max_message_size")


def test_backlog_bound_equal_to_message_size_is_accepted():
    env = {"WC_SERVER__MAX_BACKLOG_BYTES": "1000", "WC_CHANNEL__MAX_MESSAGE_SIZE": "1000"}
    assert load_config(None, env).server.max_backlog_bytes == 1000


@pytest.mark.parametrize(
    "metrics",
    [
        {"WC_METRICS__AUTH_ENABLED": "true"},
        {"WC_METRICS__AUTH_ENABLED": "true", "WC_METRICS__AUTH_USERNAME": "prom"},
        {"WC_METRICS__AUTH_ENABLED": "true", "WC_METRICS__AUTH_PASSWORD": "pw-s3cr3t"},
        {"WC_METRICS__AUTH_ENABLED": "true", "WC_METRICS__AUTH_USERNAME": "", "WC_METRICS__AUTH_PASSWORD": "x"},
    ],
)
def test_metrics_auth_without_username_and_password_is_an_error(metrics):
    message = config_error(None, metrics)
    assert_names(message, "metrics.auth_enabled")
    assert "pw-s3cr3t" not in message


def test_metrics_auth_with_username_and_password_is_accepted():
    env = {"WC_METRICS__AUTH_ENABLED": "yes", "WC_METRICS__AUTH_USERNAME": "u", "WC_METRICS__AUTH_PASSWORD": "p"}
    assert load_config(None, env).metrics.auth_enabled is True


@pytest.mark.parametrize(
    ("environ", "variables"),
    [
        ({"WC_REDIS__URL": "redis://127.0.0.1:6379/0"}, ("WC_REDIS__URL", "WC_CHANNEL__SECRET_KEY")),
        (
            {"WC_SERVER__MAX_BACKLOG_BYTES": "1000", "WC_CHANNEL__MAX_MESSAGE_SIZE": "1001"},
            ("WC_SERVER__MAX_BACKLOG_BYTES", "WC_CHANNEL__MAX_MESSAGE_SIZE"),
        ),
        ({"WC_METRICS__AUTH_ENABLED": "true"}, ("WC_METRICS__AUTH_ENABLED",)),
    ],
)
def test_rule_across_keys_set_in_environment_names_the_variable(environ, variables):
    # Every ConfigError names its source: here the variables, not just "configuration".
    message = config_error(None, environ)
    assert any(name in message for name in variables), f"none of {variables} named in {message!r}"


# --- secrets never in messages ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('[channel]\nsecret_key = ["s3cr3t-value"]\n', "s3cr3t-value"),
        ('[channel]\napi_keys = ["good-key", "bad s3cr3t key"]\n', "s3cr3t"),
        ('[channel]\napi_keys = ["good-key", 5]\n', "good-key"),
        ('[channel]\napi_keys = "s3cr3t-key with space"\n', "s3cr3t"),
        ('[channel]\nprevious_secret_keys = ["old-s3cr3t", ""]\n', "old-s3cr3t"),
        ('[channel]\nprevious_secret_keys = ["old-s3cr3t", 1]\n', "old-s3cr3t"),
        ('[redis]\nurl = "http://:s3cr3t-pw@127.0.0.1:6379"\n', "s3cr3t"),
        ('[redis]\nurl = ["redis://:s3cr3t-pw@127.0.0.1:6379"]\n', "s3cr3t"),
        ('[metrics]\nauth_password = ["s3cr3t-pw"]\n', "s3cr3t"),
        ('[metrics]\nauth_enabled = true\nauth_password = "s3cr3t-pw"\n', "s3cr3t"),
        ('[redis]\nurl = "redis://:s3cr3t-pw@127.0.0.1:6379"\n', "s3cr3t"),
    ],
)
def test_secret_values_never_appear_in_file_errors(tmp_path, text, secret):
    message = config_error(write(tmp_path, text), {})
    assert secret not in message


@pytest.mark.parametrize(
    ("environ", "secret"),
    [
        ({"WC_CHANNEL__API_KEYS": "good-key,bad s3cr3t"}, "s3cr3t"),
        ({"WC_CHANNEL__API_KEYS": "good-key,bad s3cr3t"}, "good-key"),
        ({"WC_CHANNEL__API_KEYS": "caf\u00e9-s3cr3t"}, "s3cr3t"),
        ({"WC_REDIS__URL": "http://:s3cr3t-pw@h:1", "WC_CHANNEL__SECRET_KEY": SECRET}, "s3cr3t"),
        ({"WC_REDIS__URL": "redis://:s3cr3t-pw@h:1"}, "s3cr3t"),
        (
            {"WC_REDIS__URL": "redis://h:1", "WC_CHANNEL__SECRET_KEY": "s3cr3t-k", "WC_CHANNEL__TTL": "x"},
            "s3cr3t",
        ),
        ({"WC_METRICS__AUTH_ENABLED": "on", "WC_METRICS__AUTH_PASSWORD": "s3cr3t-pw"}, "s3cr3t"),
    ],
)
def test_secret_values_never_appear_in_environment_errors(environ, secret):
    assert secret not in config_error(None, environ)


@pytest.mark.parametrize(
    "name",
    ["WC_CHANNEL__SECRET_KEY", "WC_CHANNEL__PREVIOUS_SECRET_KEYS", "WC_METRICS__AUTH_PASSWORD"],
)
def test_environment_secret_with_undecodable_bytes_is_an_error(name):
    # os.environ carries bytes that are not UTF-8 as lone surrogates ("\udcff"); such a secret
    # cannot be encoded to sign tokens or compare passwords, so every use would fail later.
    environ = {
        "WC_METRICS__AUTH_ENABLED": "true",
        "WC_METRICS__AUTH_USERNAME": "prom",
        "WC_METRICS__AUTH_PASSWORD": "pw",
        **KNOWN,
        name: "s3cr3t\udcff",
    }
    message = config_error(None, environ)
    assert_names(message, name)
    assert "s3cr3t" not in message


# --- secrets have at least 8 characters; secret lists may be JSON arrays -----------------------


@pytest.mark.parametrize(
    ("environ", "variable", "secret"),
    [
        # One strong key split at its comma into two weak ones is refused, not accepted as two keys.
        ({"WC_CHANNEL__API_KEYS": "Kx9,p"}, "WC_CHANNEL__API_KEYS", "Kx9"),
        ({"WC_CHANNEL__API_KEYS": "good-key-1,short7"}, "WC_CHANNEL__API_KEYS", "short7"),
        ({"WC_CHANNEL__PREVIOUS_SECRET_KEYS": "old-secret-1,2"}, "WC_CHANNEL__PREVIOUS_SECRET_KEYS", "old-secret-1"),
        ({"WC_CHANNEL__SECRET_KEY": "s3cr3t7"}, "WC_CHANNEL__SECRET_KEY", "s3cr3t7"),
        ({"WC_CHANNEL__API_KEYS": '["s3cr3t7"]'}, "WC_CHANNEL__API_KEYS", "s3cr3t7"),
    ],
)
def test_a_secret_shorter_than_8_characters_in_the_environment_is_an_error(environ, variable, secret):
    message = config_error(None, {**KNOWN, **environ})
    assert_names(message, variable, "at least 8 characters")
    assert secret not in message


@pytest.mark.parametrize(
    ("text", "dotted", "secret"),
    [
        ('[channel]\nsecret_key = "s3cr3t7"\n', "channel.secret_key", "s3cr3t7"),
        ('[channel]\nprevious_secret_keys = ["old-secret-1", "s3cr3t7"]\n', "channel.previous_secret_keys", "s3cr3t7"),
        ('[channel]\napi_keys = ["good-key-1", "s3cr3t7"]\n', "channel.api_keys", "s3cr3t7"),
        (
            '[[channel.keys]]\nname = "ci"\nkey = "s3cr3t7"\nscopes = ["publish"]\n',
            "channel.keys[0].key",
            "s3cr3t7",
        ),
    ],
)
def test_a_secret_shorter_than_8_characters_in_a_file_is_an_error(tmp_path, text, dotted, secret):
    path = write(tmp_path, text)
    message = config_error(path, {})
    assert_names(message, path, dotted, "at least 8 characters")
    assert secret not in message


def test_secrets_of_exactly_8_characters_are_accepted():
    config = load_config(
        None,
        {
            "WC_CHANNEL__SECRET_KEY": "8-chars!",
            "WC_CHANNEL__PREVIOUS_SECRET_KEYS": "old-8-ch",
            "WC_CHANNEL__API_KEYS": "key-8-ch",
        },
    )
    assert config.secret_keys == ("8-chars!", "old-8-ch")
    assert config.channel.api_keys == ("key-8-ch",)


def test_a_json_array_in_the_environment_keeps_commas_inside_keys():
    config = load_config(None, {**KNOWN, "WC_CHANNEL__API_KEYS": '["a,b-12345", "c-123456"]'})
    assert config.channel.api_keys == ("a,b-12345", "c-123456")


def test_a_json_array_of_previous_secrets_keeps_commas_inside_them():
    environ = {**KNOWN, "WC_CHANNEL__PREVIOUS_SECRET_KEYS": ' ["old,secret-1", "old-secret-2"] '}
    assert load_config(None, environ).channel.previous_secret_keys == ("old,secret-1", "old-secret-2")


@pytest.mark.parametrize(
    "text", ['["a,b-12345", "c-1234', '["a,b-12345", 5]', "['single-quoted-key']", '[["nested-key-1"]]', "[not json"]
)
def test_a_bad_json_array_in_the_environment_is_an_error_that_hides_the_value(text):
    message = config_error(None, {**KNOWN, "WC_CHANNEL__API_KEYS": text})
    assert_names(message, "WC_CHANNEL__API_KEYS", "JSON array of strings")
    for secret in ("a,b-12345", "single-quoted-key", "nested-key-1", "not json"):
        assert secret not in message


# --- generated secrets ------------------------------------------------------------------------


def test_unset_secret_and_api_keys_are_generated_and_listed():
    config = load_config(None, {})
    assert set(config.generated) == {"channel.secret_key", "channel.api_keys"}
    assert config.channel.secret_key
    assert len(config.channel.secret_key) >= 32
    assert len(config.channel.api_keys) == 1
    assert len(config.channel.api_keys[0]) >= 20
    assert re.fullmatch(r"[\x21-\x7e]+", config.channel.api_keys[0])


def test_generated_secrets_differ_between_loads():
    first, second = load_config(None, {}), load_config(None, {})
    assert first.channel.secret_key != second.channel.secret_key
    assert first.channel.api_keys != second.channel.api_keys


def test_empty_api_key_list_is_generated_too(tmp_path):
    config = load_config(write(tmp_path, '[channel]\napi_keys = []\nsecret_key = "file-secret"\n'), {})
    assert config.generated == ("channel.api_keys",)
    assert config.channel.secret_key == "file-secret"


def test_configured_secrets_are_kept_and_nothing_is_generated():
    config = load_config(None, KNOWN)
    assert config.generated == ()
    assert config.channel.secret_key == SECRET
    assert config.channel.api_keys == (API_KEY,)


def test_only_the_missing_secret_is_generated():
    config = load_config(None, {"WC_CHANNEL__SECRET_KEY": SECRET})
    assert config.generated == ("channel.api_keys",)


# --- WC_LOG (parsed by channels_api.logs; its errors come through load_config) ------------------


@pytest.mark.parametrize("text", ["verbose", "channels_api=loud", "=debug"])
def test_bad_wc_log_is_a_config_error_naming_wc_log(text):
    assert_names(config_error(None, {"WC_LOG": text}), "WC_LOG")


def test_wc_log_is_read_by_load_config():
    config = load_config(None, {"WC_LOG": "channels_api=debug,django=warning"})
    assert config.log.level == "INFO"
    assert dict(config.log.loggers) == {"channels_api": "DEBUG", "django": "WARNING"}


# --- property: load_config only ever returns a Config or raises a one-line ConfigError -------------


KEY_NAMES = sorted({key.name for key in keys()})
ENV_NAMES = sorted(key.env_name for key in keys())
NO_SURROGATES = st.characters(exclude_categories=["Cs"])


def toml_string(text: str) -> str:
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    assert isinstance(value, RawToml)
    return value.text


class RawToml:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"RawToml({self.text!r})"


scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(NO_SURROGATES, max_size=20),
    st.sampled_from(
        [
            "127.0.0.1:0",
            "[::1]:8080",
            "localhost:1",
            "redis://127.0.0.1:1/0",
            "https://a.example",
            "true",
            "60",
            "",
        ]
    ),
    st.sampled_from([RawToml("1979-05-27T07:32:00Z"), RawToml("07:32:00"), RawToml("1979-05-27")]),
)
toml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(NO_SURROGATES, max_size=5), inner, max_size=3),
    max_leaves=6,
)
names = st.text(NO_SURROGATES, max_size=12)
tables = st.dictionaries(st.sampled_from(KEY_NAMES) | names, toml_values, max_size=5)
documents = st.dictionaries(st.sampled_from(list(SECTIONS)) | names, tables | toml_values, max_size=4)


def render(document: dict[str, Any]) -> str:
    lines = []
    # Plain values first: after a [table] header they would belong to the table.
    for name, value in document.items():
        if not isinstance(value, dict):
            lines.append(f"{toml_string(name)} = {toml_value(value)}")
    for name, value in document.items():
        if isinstance(value, dict):
            lines.append(f"[{toml_string(name)}]")
            lines += [f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def assert_config_or_one_line_error(path: str | None, environ: dict[str, str]) -> None:
    try:
        config = load_config(path, environ)
    except ConfigError as exc:
        message = str(exc)
        assert message
        assert "\n" not in message, f"not one line: {message!r}"
        assert "\r" not in message, f"not one line: {message!r}"
    else:
        assert isinstance(config, Config)


HYPOTHESIS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.slow
@HYPOTHESIS
@given(document=documents)
@example(document={"channel": {"tt\nl": 1}})
@example(document={"channel": {"ttl": RawToml("9" * 5000)}})
def test_any_toml_document_gives_a_config_or_a_one_line_error(tmp_path, document):
    path = tmp_path / "random.toml"
    path.write_text(render(document), encoding="utf-8")
    assert_config_or_one_line_error(str(path), {})


@HYPOTHESIS
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_file_content_gives_a_config_or_a_one_line_error(tmp_path, data):
    path = tmp_path / "random.toml"
    path.write_bytes(data)
    assert_config_or_one_line_error(str(path), {})


env_names = st.sampled_from([*ENV_NAMES, "WC_LOG", "WC_SOMETHING"]) | st.from_regex(
    r"\AWC_[A-Z0-9_]{0,12}__[A-Z0-9_]{0,12}\Z"
)
env_values = st.text(max_size=40) | st.sampled_from(
    ["true", "0", "60", "1e3", "nan", "-1", "127.0.0.1:0", "redis://h:1", "https://a.example,b", "debug", " , "]
)


@pytest.mark.slow
@HYPOTHESIS
@given(environ=st.dictionaries(env_names, env_values, max_size=6))
def test_any_environment_gives_a_config_or_a_one_line_error(environ):
    assert_config_or_one_line_error(None, environ)
