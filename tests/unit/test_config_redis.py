"""The ``[redis]`` keys: one URL or several (shards), Sentinel, the channel prefix, TLS and
credentials; their rules across keys; their mapping to channels_redis host entries; and
passwords redacted wherever a Redis address is shown."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from channels_redis.utils import _consistent_hash, create_pool
from django.test import override_settings
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import SentinelConnectionPool

from channels_api.checks import check_redis_password_tls
from channels_api.config import load_config
from channels_api.redis_hosts import (
    CONNECT_TIMEOUT_SECONDS,
    HEALTH_CHECK_INTERVAL_SECONDS,
    describe_host,
    layer_hosts,
    redact_url,
)
from channels_api.server.redis_layer import RedisPubSubChannelLayer
from tests.redis_servers import make_tls_files
from tests.unit.test_config import KNOWN, assert_names, config_error, write

A = "redis://10.0.0.1:6379/0"
B = "redis://10.0.0.2:6379/0"
PASSWORD = "s3cr3t-Pw"


def redis_config(environ: dict[str, str], path: str | None = None):
    return load_config(path, {**KNOWN, **environ}).redis


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(make_tls_files(tmp_path_factory.mktemp("tls")).ca_cert)


# --- redis.url: one or several --------------------------------------------------------------


def test_one_url_as_a_toml_string_still_works(tmp_path: Path) -> None:
    path = write(tmp_path, f'[redis]\nurl = "{A}"\n')
    config = redis_config({}, path)
    assert config.url == (A,)
    assert config.enabled


def test_several_urls_as_a_toml_array_keep_their_order(tmp_path: Path) -> None:
    path = write(tmp_path, f'[redis]\nurl = ["{B}", "{A}"]\n')
    assert redis_config({}, path).url == (B, A)


def test_several_urls_comma_separated_in_the_environment() -> None:
    assert redis_config({"WC_REDIS__URL": f"{A}, {B}"}).url == (A, B)


@pytest.mark.parametrize("text", ['url = ""', "url = []"])
def test_an_empty_url_means_the_in_process_layer(tmp_path: Path, text: str) -> None:
    config = redis_config({}, write(tmp_path, f"[redis]\n{text}\n"))
    assert config.url == ()
    assert not config.enabled


@pytest.mark.parametrize("text", ["url = 6379", "url = [1]", "url = true"])
def test_a_url_that_is_not_text_names_both_accepted_shapes(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, f"[redis]\n{text}\n")
    assert_names(config_error(path, KNOWN), path, "redis.url", "a string or a list of strings")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:6379", "redis://, rediss:// or unix://"),
        ("redis://:s3cr3t-Pw@127.0.0.1:99999/0", "valid host and port"),
        ("redis:///0", "a host"),
        ("redis://127.0.0.1:6379/db0", "database number"),
        ("unix://:s3cr3t-Pw@", "unix:///path"),
        ("redis://127.0.0.1:6379/0#frag", "redis://, rediss:// or unix://"),
    ],
)
def test_a_bad_url_says_what_was_expected_without_showing_it(url: str, expected: str) -> None:
    message = config_error(None, {**KNOWN, "WC_REDIS__URL": url})
    assert_names(message, "WC_REDIS__URL", expected)
    assert url not in message
    assert PASSWORD not in message


def test_a_bad_url_in_a_list_is_named_by_its_position_never_its_text(tmp_path: Path) -> None:
    path = write(tmp_path, f'[redis]\nurl = ["{A}", "memcached://:{PASSWORD}@10.0.0.3"]\n')
    message = config_error(path, KNOWN)
    assert_names(message, path, "redis.url", "URL 2 of 2")
    assert PASSWORD not in message
    assert "10.0.0.1" not in message


def test_a_server_listed_twice_is_an_error() -> None:
    message = config_error(None, {**KNOWN, "WC_REDIS__URL": f"{A},{B},{A}"})
    assert_names(message, "WC_REDIS__URL", "listed twice")


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/",
        "redis://user:p%40ss@cache.example:6380/3",
        "rediss://:pw@[::1]:6380/0",
        "unix:///run/redis/redis.sock",
        "redis://127.0.0.1:6379/0?socket_timeout=5",
    ],
)
def test_good_urls(url: str) -> None:
    assert redis_config({"WC_REDIS__URL": url}).url == (url,)


# --- Sentinel -----------------------------------------------------------------------------------


def test_sentinels_with_a_master_name(tmp_path: Path) -> None:
    path = write(tmp_path, '[redis]\nsentinels = ["10.0.0.7:26379", "[::1]:26380"]\nmaster_name = "mymaster"\n')
    config = redis_config({}, path)
    assert config.sentinels == ("10.0.0.7:26379", "[::1]:26380")
    assert config.master_name == "mymaster"
    assert config.enabled


def test_sentinels_from_the_environment() -> None:
    config = redis_config({"WC_REDIS__SENTINELS": "s1.example:26379,s2.example:26379", "WC_REDIS__MASTER_NAME": "m"})
    assert config.sentinels == ("s1.example:26379", "s2.example:26379")


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"WC_REDIS__SENTINELS": "10.0.0.7:26379"}, ("WC_REDIS__SENTINELS", "needs redis.master_name")),
        ({"WC_REDIS__MASTER_NAME": "mymaster"}, ("WC_REDIS__MASTER_NAME", "only used with redis.sentinels")),
        (
            {"WC_REDIS__URL": A, "WC_REDIS__SENTINELS": "10.0.0.7:26379", "WC_REDIS__MASTER_NAME": "m"},
            ("WC_REDIS__URL", "WC_REDIS__SENTINELS", "not both"),
        ),
    ],
)
def test_url_or_sentinels_with_master_name_exactly(environ: dict[str, str], named: tuple[str, ...]) -> None:
    assert_names(config_error(None, {**KNOWN, **environ}), *named)


@pytest.mark.parametrize("address", ["10.0.0.7", "10.0.0.7:0", "10.0.0.7:65536", ":26379", "a b:1", "h:x"])
def test_a_bad_sentinel_address_is_an_error(address: str) -> None:
    environ = {**KNOWN, "WC_REDIS__SENTINELS": address, "WC_REDIS__MASTER_NAME": "m"}
    assert_names(config_error(None, environ), "WC_REDIS__SENTINELS", "HOST:PORT")


@pytest.mark.parametrize("name", ["my master", "é"])
def test_a_bad_master_name_is_an_error(name: str) -> None:
    environ = {**KNOWN, "WC_REDIS__SENTINELS": "h:1", "WC_REDIS__MASTER_NAME": name}
    assert_names(config_error(None, environ), "WC_REDIS__MASTER_NAME")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f'[redis]\nurl = ["{A}", "{B}"]\n', "redis.url"),
        ('[redis]\nsentinels = ["10.0.0.7:26379"]\nmaster_name = "m"\n', "redis.sentinels"),
    ],
)
def test_redis_without_a_secret_key_is_an_error(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    message = config_error(path, {})
    assert_names(message, path, "channel.secret_key", key)


# --- redis.prefix -------------------------------------------------------------------------------


def test_the_prefix_defaults_to_webchannel() -> None:
    assert load_config(None, {}).redis.prefix == "webchannel"


@pytest.mark.parametrize("prefix", ["prod", "webchannel-staging", "team_a.v2", "x", "a" * 32, "A-1_b.2"])
def test_good_prefixes(prefix: str) -> None:
    assert redis_config({"WC_REDIS__PREFIX": prefix}).prefix == prefix


@pytest.mark.parametrize("prefix", ["", "a" * 33, "a b", "a__b", "a_", "_a", "prod:1", "caf\u00e9", "a/b", "a*"])
def test_bad_prefixes_are_an_error(tmp_path: Path, prefix: str) -> None:
    message = config_error(None, {**KNOWN, "WC_REDIS__PREFIX": prefix})
    assert_names(message, "WC_REDIS__PREFIX", "expected 1 to 32")
    path = write(tmp_path, f"[redis]\nprefix = {prefix!r}\n".replace("'", '"'))
    assert_names(config_error(path, KNOWN), path, "redis.prefix")


def test_no_prefix_can_make_another_prefixs_channel_names() -> None:
    # channels_redis names a group's Redis channel PREFIX + "__group__" + group: with no "__"
    # in a prefix and none at its end, the text before the first "__" is the prefix.
    for prefix in ["a", "a_b", "a.b-c"]:
        name = f"{prefix}__group__wc.x"
        assert name.split("__", 1)[0] == prefix


# --- TLS ----------------------------------------------------------------------------------------


def test_a_ca_file_for_rediss(ca_file: str) -> None:
    config = redis_config({"WC_REDIS__URL": "rediss://127.0.0.1:6380/0", "WC_REDIS__SSL_CA_CERTS": ca_file})
    assert config.ssl_ca_certs == ca_file


def test_a_missing_ca_file_is_one_line_naming_the_key_and_the_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    message = config_error(None, {**KNOWN, "WC_REDIS__URL": "rediss://h:1/0", "WC_REDIS__SSL_CA_CERTS": missing})
    assert_names(message, "WC_REDIS__SSL_CA_CERTS", missing, "readable", "No such file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_ca_file_is_an_error(tmp_path: Path, ca_file: str) -> None:
    locked = tmp_path / "locked.pem"
    locked.write_bytes(Path(ca_file).read_bytes())
    locked.chmod(0)
    message = config_error(None, {**KNOWN, "WC_REDIS__URL": "rediss://h:1/0", "WC_REDIS__SSL_CA_CERTS": str(locked)})
    assert_names(message, "WC_REDIS__SSL_CA_CERTS", "Permission denied")


def test_a_ca_file_without_certificates_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "not-a-ca.pem"
    path.write_text("hello\n")
    message = config_error(None, {**KNOWN, "WC_REDIS__URL": "rediss://h:1/0", "WC_REDIS__SSL_CA_CERTS": str(path)})
    assert_names(message, "WC_REDIS__SSL_CA_CERTS", "PEM")


def test_a_ca_file_without_a_rediss_url_is_an_error(ca_file: str) -> None:
    message = config_error(None, {**KNOWN, "WC_REDIS__URL": A, "WC_REDIS__SSL_CA_CERTS": ca_file})
    assert_names(message, "WC_REDIS__SSL_CA_CERTS", "rediss://")


# --- mapping to channels_redis ------------------------------------------------------------------


def test_each_url_becomes_one_host_entry_with_the_timeouts(ca_file: str) -> None:
    tls = f"rediss://user:{PASSWORD}@10.0.0.3:6380/0"
    config = redis_config({"WC_REDIS__URL": f"{A},{tls}", "WC_REDIS__SSL_CA_CERTS": ca_file})
    common = {"socket_connect_timeout": CONNECT_TIMEOUT_SECONDS, "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS}
    assert layer_hosts(config) == [
        {"address": A, **common},
        {"address": tls, "ssl_ca_certs": ca_file, **common},  # a plain connection takes no TLS options
    ]


def test_channels_redis_builds_the_pools_the_entries_describe(ca_file: str) -> None:
    tls = f"rediss://alice:{PASSWORD}@127.0.0.1:6380/2"
    plain, secure = (
        create_pool(h)
        for h in layer_hosts(redis_config({"WC_REDIS__URL": f"{A},{tls}", "WC_REDIS__SSL_CA_CERTS": ca_file}))
    )
    assert plain.connection_kwargs["host"] == "10.0.0.1"
    assert plain.connection_kwargs["socket_connect_timeout"] == CONNECT_TIMEOUT_SECONDS
    assert plain.connection_kwargs["health_check_interval"] == HEALTH_CHECK_INTERVAL_SECONDS
    assert issubclass(secure.connection_class, SSLConnection)
    assert secure.connection_kwargs["ssl_ca_certs"] == ca_file
    assert (secure.connection_kwargs["username"], secure.connection_kwargs["password"]) == ("alice", PASSWORD)
    assert secure.connection_kwargs["db"] == 2


def test_sentinels_become_one_sentinel_entry() -> None:
    config = redis_config({"WC_REDIS__SENTINELS": "10.0.0.7:26379,[::1]:26380", "WC_REDIS__MASTER_NAME": "mymaster"})
    (host,) = layer_hosts(config)
    assert host["sentinels"] == [("10.0.0.7", 26379), ("::1", 26380)]
    assert host["master_name"] == "mymaster"
    assert host["sentinel_kwargs"]["socket_connect_timeout"] == CONNECT_TIMEOUT_SECONDS
    assert host["sentinel_kwargs"]["socket_timeout"] > 0  # an unanswering sentinel is passed over
    pool = create_pool(host)
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.connection_kwargs["socket_connect_timeout"] == CONNECT_TIMEOUT_SECONDS
    assert pool.connection_kwargs["health_check_interval"] == HEALTH_CHECK_INTERVAL_SECONDS
    sentinel_kwargs = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel_kwargs["socket_timeout"] == host["sentinel_kwargs"]["socket_timeout"]


def test_the_layer_uses_the_prefix_and_one_shard_per_url() -> None:
    config = redis_config({"WC_REDIS__URL": f"{A},{B}", "WC_REDIS__PREFIX": "alpha"})

    async def inspect() -> None:
        layer = RedisPubSubChannelLayer(hosts=layer_hosts(config), prefix=config.prefix)._get_layer()
        assert layer._get_group_channel_name("wc.x") == "alpha__group__wc.x"
        assert [shard.host["address"] for shard in layer._shards] == [A, B]
        groups = layer.probe_groups("wc-readyz.1")
        shards = [_consistent_hash(layer._get_group_channel_name(g), 2) for g in groups]
        assert shards == [0, 1]  # a readiness probe crosses every server

    asyncio.run(inspect())


# --- passwords never shown ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://user:{PASSWORD}@127.0.0.1:6390/0", "redis://user:***@127.0.0.1:6390/0"),
        (f"rediss://:{PASSWORD}@cache.example:6380", "rediss://:***@cache.example:6380"),
        (f"redis://{PASSWORD}@127.0.0.1:6390/0", "redis://***@127.0.0.1:6390/0"),
        (f"redis://127.0.0.1:6390/0?password={PASSWORD}&db=1", "redis://127.0.0.1:6390/0?password=***&db=1"),
        ("redis://127.0.0.1:6390/0", "redis://127.0.0.1:6390/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("redis://[::1", "***"),
    ],
)
def test_redacted_urls_hide_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_hosts_are_described_without_secrets() -> None:
    assert describe_host({"address": f"redis://u:{PASSWORD}@h:1/0"}) == "redis://u:***@h:1/0"
    sentinel = {"sentinels": [("10.0.0.7", 26379), ("::1", 26380)], "master_name": "m"}
    assert describe_host(sentinel) == "master 'm' via sentinels 10.0.0.7:26379, [::1]:26380"


# --- manage.py check --deploy -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        (f"redis://user:{PASSWORD}@10.0.0.5:6379/0", True),
        (f"redis://:{PASSWORD}@cache.example:6379/0", True),
        (f"rediss://user:{PASSWORD}@10.0.0.5:6379/0", False),
        (f"redis://user:{PASSWORD}@127.0.0.1:6379/0", False),
        (f"redis://:{PASSWORD}@localhost:6379/0", False),
        ("redis://10.0.0.5:6379/0", False),
    ],
)
def test_a_password_sent_in_clear_to_another_host_is_a_deploy_warning(url: str, warned: bool) -> None:
    config = load_config(None, {**KNOWN, "WC_REDIS__URL": f"{A},{url}"})  # A has no password
    with override_settings(WEBCHANNEL=config):
        messages = check_redis_password_tls()
    assert [m.id for m in messages] == (["channels_api.W003"] if warned else [])
    for message in messages:
        assert PASSWORD not in message.msg
        assert redact_url(url) in message.msg
