"""Named, scoped API keys: ``[[channel.keys]]`` in TOML and ``WC_CHANNEL__KEYS`` as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from channels_api.auth import API_KEY_ACTIONS, ApiKey
from channels_api.config import load_config
from channels_api.exceptions import ConfigError

TWO_KEYS = """
[channel]
secret_key = "file-secret"
api_keys = ["full-key"]

[[channel.keys]]
name = "ci-worker"
key = "ci-key-0001"
scopes = ["publish"]

[[channel.keys]]
name = "backend.web_1"
key = "web-key-0001"
scopes = ["create", "info", "close"]
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def error_of(path: str | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {})
    return str(info.value)


def test_tables_are_read_beside_the_plain_list(tmp_path):
    config = load_config(write(tmp_path, TWO_KEYS), {})
    assert config.channel.keys == (
        ApiKey("ci-worker", "ci-key-0001", frozenset({"publish"})),
        ApiKey("backend.web_1", "web-key-0001", frozenset({"create", "info", "close"})),
    )
    assert config.channel.api_keys == ("full-key",)
    assert [(e.name, e.key, e.scopes) for e in config.api_key_entries] == [
        ("api_keys", "full-key", frozenset(API_KEY_ACTIONS)),
        ("ci-worker", "ci-key-0001", frozenset({"publish"})),
        ("backend.web_1", "web-key-0001", frozenset({"create", "info", "close"})),
    ]
    assert config.generated == ()


def test_inline_array_of_tables_is_the_same(tmp_path):
    text = '[channel]\nkeys = [{ name = "ci", key = "ci-key-0001", scopes = ["publish"] }]\n'
    assert load_config(write(tmp_path, text), {}).channel.keys == (ApiKey("ci", "ci-key-0001", frozenset({"publish"})),)


def test_named_keys_alone_generate_no_unnamed_key(tmp_path):
    text = '[[channel.keys]]\nname = "ci"\nkey = "ci-key-0001"\nscopes = ["publish"]\n'
    config = load_config(write(tmp_path, text), {})
    assert config.channel.api_keys == ()
    assert config.generated == ("channel.secret_key",)
    assert [e.name for e in config.api_key_entries] == ["ci"]


def test_environment_json_form():
    value = json.dumps([{"name": "ci", "key": "env-key-01", "scopes": ["publish", "info"]}])
    config = load_config(None, {"WC_CHANNEL__KEYS": value})
    assert config.channel.keys == (ApiKey("ci", "env-key-01", frozenset({"publish", "info"})),)


def test_environment_overrides_the_file(tmp_path):
    value = json.dumps([{"name": "other", "key": "other-key-9", "scopes": ["close"]}])
    config = load_config(write(tmp_path, TWO_KEYS), {"WC_CHANNEL__KEYS": value})
    assert [e.name for e in config.channel.keys] == ["other"]


def test_empty_environment_value_means_no_named_keys():
    assert load_config(None, {"WC_CHANNEL__KEYS": ""}).channel.keys == ()


@pytest.mark.parametrize(
    ("entry", "field", "expected"),
    [
        ({"key": "ci-key-0001", "scopes": ["publish"]}, "name", "missing"),
        ({"name": "ci", "scopes": ["publish"]}, "key", "missing"),
        ({"name": "ci", "key": "ci-key-0001"}, "scopes", "missing"),
        ({"name": "ci", "key": "ci-key-0001", "scopes": ["publish"], "note": "x"}, "note", "unknown field"),
        ({"name": "", "key": "ci-key-0001", "scopes": ["publish"]}, "name", "expected 1 to 64"),
        ({"name": "ci worker", "key": "ci-key-0001", "scopes": ["publish"]}, "name", "expected 1 to 64"),
        ({"name": "ci\nFAKE LOG LINE", "key": "ci-key-0001", "scopes": ["publish"]}, "name", "expected 1 to 64"),
        ({"name": "x" * 65, "key": "ci-key-0001", "scopes": ["publish"]}, "name", "expected 1 to 64"),
        ({"name": "-ci", "key": "ci-key-0001", "scopes": ["publish"]}, "name", "expected 1 to 64"),
        ({"name": 5, "key": "ci-key-0001", "scopes": ["publish"]}, "name", "expected 1 to 64"),
        ({"name": "api_keys", "key": "ci-key-0001", "scopes": ["publish"]}, "name", "reserved"),
        ({"name": "ci", "key": "with space", "scopes": ["publish"]}, "key", "visible ASCII"),
        ({"name": "ci", "key": "", "scopes": ["publish"]}, "key", "visible ASCII"),
        ({"name": "ci", "key": "cl\u00e9", "scopes": ["publish"]}, "key", "visible ASCII"),
        ({"name": "ci", "key": "ci-key-0001", "scopes": []}, "scopes", "non-empty list"),
        ({"name": "ci", "key": "ci-key-0001", "scopes": "publish"}, "scopes", "non-empty list"),
        (
            {"name": "ci", "key": "ci-key-0001", "scopes": ["publish", "subscribe"]},
            "scopes",
            "unknown scope 'subscribe'",
        ),
        ({"name": "ci", "key": "ci-key-0001", "scopes": ["admin"]}, "scopes", "unknown scope 'admin'"),
    ],
)
def test_a_bad_entry_is_named_by_index_and_field(tmp_path, entry, field, expected):
    good = {"name": "first", "key": "first-key", "scopes": ["publish"]}
    value = json.dumps([good, entry])
    message = error_of(None, {"WC_CHANNEL__KEYS": value})
    assert message.startswith(f"WC_CHANNEL__KEYS: channel.keys[1].{field}: "), message
    assert expected in message
    if isinstance(entry.get("key"), str) and len(entry["key"]) > 1:
        assert entry["key"] not in message  # a key is never shown


def test_file_errors_name_the_file_and_the_entry(tmp_path):
    text = TWO_KEYS.replace('scopes = ["publish"]', 'scopes = ["publsh"]')
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}: channel.keys[0].scopes: unknown scope 'publsh'"), message


def test_names_are_unique(tmp_path):
    path = write(tmp_path, TWO_KEYS.replace('"backend.web_1"', '"ci-worker"'))
    assert error_of(path).startswith(f"{path}: channel.keys[1].name: 'ci-worker' is the name of an earlier entry")


def test_keys_are_unique_among_named_keys(tmp_path):
    path = write(tmp_path, TWO_KEYS.replace('"web-key-0001"', '"ci-key-0001"'))
    message = error_of(path)
    assert message.startswith(f"{path}: channel.keys[1].key: the same key as an earlier entry"), message
    assert "ci-key-0001" not in message


def test_keys_are_unique_across_both_forms(tmp_path):
    path = write(tmp_path, TWO_KEYS.replace('"web-key-0001"', '"full-key"'))
    message = error_of(path)
    assert message.startswith(f"{path}: channel.keys[1].key is also in channel.api_keys"), message
    assert "full-key" not in message


def test_keys_across_file_and_environment_name_both_sources(tmp_path):
    path = write(tmp_path, TWO_KEYS)
    message = error_of(path, {"WC_CHANNEL__API_KEYS": "ci-key-0001"})
    assert "channel.keys[0].key is also in channel.api_keys" in message
    assert path in message
    assert "WC_CHANNEL__API_KEYS" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[channel]\nkeys = "ci"\n', "expected a list of tables"),
        ('[channel]\nkeys = ["ci"]\n', "channel.keys[0]: expected a table"),
    ],
)
def test_keys_must_be_tables(tmp_path, text, expected):
    assert expected in error_of(write(tmp_path, text))


@pytest.mark.parametrize("value", ["not json", '{"name": "ci"}', "[1]", '"ci"'])
def test_environment_value_must_be_a_json_array_of_objects(value):
    message = error_of(None, {"WC_CHANNEL__KEYS": value})
    assert message.startswith("WC_CHANNEL__KEYS: "), message
    assert "expected" in message


# --- channels (id prefixes) and max_publish_rate --------------------------------------------------


def test_channels_and_max_publish_rate_are_read(tmp_path):
    text = (
        '[[channel.keys]]\nname = "tenant-a"\nkey = "tenant-a-key"\nscopes = ["create", "publish"]\n'
        'channels = ["tenant-a:", "shared."]\nmax_publish_rate = 50\n'
    )
    (entry,) = load_config(write(tmp_path, text), {}).channel.keys
    assert entry.channels == ("tenant-a:", "shared.")
    assert entry.max_publish_rate == 50.0
    assert isinstance(entry.max_publish_rate, float)


def test_without_channels_and_max_publish_rate_a_key_has_every_id_and_no_rate(tmp_path):
    (entry,) = load_config(write(tmp_path, TWO_KEYS), {}).channel.keys[:1]
    assert (entry.channels, entry.max_publish_rate) == ((), None)
    assert entry.allows_channel("anything")


def test_channels_and_max_publish_rate_in_the_environment_json_form():
    value = json.dumps(
        [{"name": "ci", "key": "env-key-01", "scopes": ["publish"], "channels": ["ci-"], "max_publish_rate": 0.5}]
    )
    (entry,) = load_config(None, {"WC_CHANNEL__KEYS": value}).channel.keys
    assert (entry.channels, entry.max_publish_rate) == (("ci-",), 0.5)


def test_allows_channel_is_a_prefix_match():
    entry = ApiKey("t", "tenant-key", frozenset({"create"}), ("tenant-a:", "b."))
    assert entry.allows_channel("tenant-a:1")
    assert entry.allows_channel("tenant-a:")
    assert entry.allows_channel("b.x")
    assert not entry.allows_channel("tenant-b:1")
    assert not entry.allows_channel("tenant-a")
    assert not entry.allows_channel("x-tenant-a:1")


@pytest.mark.parametrize(
    ("extra", "field", "expected"),
    [
        ({"channels": []}, "channels", "non-empty list of channel-id prefixes"),
        ({"channels": "tenant-a:"}, "channels", "non-empty list of channel-id prefixes"),
        ({"channels": ["tenant-a:", 5]}, "channels", "non-empty list of channel-id prefixes"),
        ({"channels": ["tenant/a:"]}, "channels", "must not contain '/'"),
        ({"channels": ["tenant a:"]}, "channels", "whitespace"),
        ({"channels": [""]}, "channels", "1 to 128"),
        ({"channels": ["x" * 101]}, "channels", "at most 100 characters"),
        ({"channels": ["a:", "a:"]}, "channels", "listed twice"),
        ({"max_publish_rate": 0}, "max_publish_rate", "greater than 0"),
        ({"max_publish_rate": -1.5}, "max_publish_rate", "greater than 0"),
        ({"max_publish_rate": "fast"}, "max_publish_rate", "messages per second"),
        ({"max_publish_rate": True}, "max_publish_rate", "messages per second"),
        ({"max_publish_rate": [10]}, "max_publish_rate", "messages per second"),
    ],
)
def test_bad_channels_or_max_publish_rate_is_named_by_index_and_field(extra, field, expected):
    good = {"name": "first", "key": "first-key", "scopes": ["publish"]}
    entry = {"name": "second", "key": "second-key", "scopes": ["publish"], **extra}
    message = error_of(None, {"WC_CHANNEL__KEYS": json.dumps([good, entry])})
    assert message.startswith(f"WC_CHANNEL__KEYS: channel.keys[1].{field}: "), message
    assert expected in message
    assert "second-key" not in message


@pytest.mark.parametrize("value", ["nan", "inf", "0.0"])
def test_a_rate_that_is_not_a_finite_positive_number_in_a_file_is_named(tmp_path, value):
    text = f'[[channel.keys]]\nname = "ci"\nkey = "ci-key-0001"\nscopes = ["publish"]\nmax_publish_rate = {value}\n'
    path = write(tmp_path, text)
    assert error_of(path).startswith(f"{path}: channel.keys[0].max_publish_rate: expected messages per second")


def test_a_bad_prefix_in_a_file_is_named_with_the_file(tmp_path):
    text = '[[channel.keys]]\nname = "ci"\nkey = "ci-key-0001"\nscopes = ["publish"]\nchannels = ["a\\tb"]\n'
    path = write(tmp_path, text)
    assert error_of(path).startswith(f"{path}: channel.keys[0].channels: prefix "), error_of(path)


def test_a_short_named_key_is_named_by_index_and_never_shown():
    value = json.dumps([{"name": "ci", "key": "Kx9,p", "scopes": ["publish"]}])
    message = error_of(None, {"WC_CHANNEL__KEYS": value})
    assert message.startswith("WC_CHANNEL__KEYS: channel.keys[0].key: expected at least 8 characters"), message
    assert "Kx9" not in message
