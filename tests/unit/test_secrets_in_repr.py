"""No object of channels_api or webchannel_client shows a token, key, password or secret in its
``repr`` or ``str``: objects end up in log lines, tracebacks, debuggers and error reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from channels_api.auth import ApiKey, issue_token
from channels_api.config import Config, load_config
from channels_api.envfile import EnvFile, read_env_file
from webchannel_client import AsyncClient, Channel, Client
from webchannel_client._common import close_call, create_call, publish_call
from webchannel_client.subscription import Subscription

SECRET_KEY = "signing-secret-0123456789"
PREVIOUS_SECRET = "previous-secret-0123456789"
API_KEY = "plain-api-key-0123456789"
NAMED_KEY = "named-api-key-0123456789"
REDIS_PASSWORD = "redis-password-0123456789"
METRICS_PASSWORD = "metrics-password-0123456789"
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJjaWQiOiJjIn0.token-signature-0123456789"
SUBSCRIBE_TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzY29wZSI6InN1YnNjcmliZSJ9.subscribe-signature"
SECRETS = (SECRET_KEY, PREVIOUS_SECRET, API_KEY, NAMED_KEY, REDIS_PASSWORD, METRICS_PASSWORD, TOKEN, SUBSCRIBE_TOKEN)


def assert_hidden(obj: object) -> None:
    for text in (repr(obj), str(obj)):
        shown = [secret for secret in SECRETS if secret in text]
        assert not shown, f"{type(obj).__name__} shows {shown} in {text}"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    path = tmp_path / "webchannel.toml"
    path.write_text(
        f"""
[channel]
secret_key = "{SECRET_KEY}"
previous_secret_keys = ["{PREVIOUS_SECRET}"]
api_keys = ["{API_KEY}"]

[[channel.keys]]
name = "ci"
key = "{NAMED_KEY}"
scopes = ["publish"]

[redis]
url = ["redis://user:{REDIS_PASSWORD}@127.0.0.1:6379/0", "rediss://:{REDIS_PASSWORD}@127.0.0.2:6380/0"]

[metrics]
auth_enabled = true
auth_username = "prometheus"
auth_password = "{METRICS_PASSWORD}"
"""
    )
    return load_config(str(path), {})


def test_the_configuration_and_each_of_its_sections_show_no_secret(config: Config) -> None:
    assert config.channel.secret_key == SECRET_KEY  # the values are there, only not shown
    for obj in (config, config.server, config.channel, config.redis, config.metrics, *config.api_key_entries):
        assert_hidden(obj)
    assert "prometheus" in repr(config.metrics)  # what is not secret still shows
    assert "ci" in repr(config.channel.keys[0])


def test_a_configuration_from_the_environment_shows_no_secret() -> None:
    environ = {
        "WC_CHANNEL__SECRET_KEY": SECRET_KEY,
        "WC_CHANNEL__API_KEYS": json.dumps([API_KEY]),
        "WC_REDIS__URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
    }
    assert_hidden(load_config(None, environ))


def test_an_env_files_variables_are_not_shown(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"WC_CHANNEL__SECRET_KEY={SECRET_KEY}\n")
    env_file = read_env_file({}, str(tmp_path))
    assert isinstance(env_file, EnvFile)
    assert env_file.values["WC_CHANNEL__SECRET_KEY"] == SECRET_KEY
    assert_hidden(env_file)


def test_an_issued_token_and_an_api_key_are_not_shown() -> None:
    issued = issue_token("c", SECRET_KEY, 60)
    assert issued.token not in repr(issued)
    assert_hidden(ApiKey("ci", NAMED_KEY, frozenset({"publish"})))


def test_a_client_channel_shows_its_id_and_expiry_but_not_its_tokens() -> None:
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    channel = Channel("channel-1", TOKEN, SUBSCRIBE_TOKEN, expires)
    assert_hidden(channel)
    assert "channel-1" in repr(channel)
    assert "2030" in repr(channel)
    assert channel == Channel("channel-1", TOKEN, SUBSCRIBE_TOKEN, expires)  # compared by every field still


async def test_clients_subscriptions_and_requests_show_no_key_or_token() -> None:
    with Client("http://127.0.0.1:1", api_key=API_KEY) as client:
        assert_hidden(client)
    async with AsyncClient("http://127.0.0.1:1", api_key=API_KEY) as async_client:
        assert_hidden(async_client)
    assert_hidden(Subscription("ws://127.0.0.1:1/webchannel/v1/channels/c", TOKEN, 1.0))
    for call in (
        create_call(API_KEY, None),
        publish_call(API_KEY, "c", b"data", TOKEN, None),
        publish_call(API_KEY, "c", b"data", None, None),
        close_call(API_KEY, "c", None),
    ):
        assert_hidden(call)
