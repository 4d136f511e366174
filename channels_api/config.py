"""Configuration: built-in defaults < TOML file < ``WC_*`` environment variables.

This module is the only place that knows the keys, their types, defaults and rules: the
schema (a frozen dataclass per section) and the loader. It imports nothing from Django,
so it is tested with plain dicts and ``tmp_path``, and ``manage.py`` can use it before
Django reads the settings.

Every problem raises :class:`~channels_api.exceptions.ConfigError` with one line naming
the source (file or environment variable), the key, the offending value (never for
secrets) and what was expected.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import json
import math
import re
import secrets
import ssl
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .auth import API_KEY_ACTIONS, API_KEYS_LABEL, ApiKey, KeyRing
from .envfile import EnvFile
from .exceptions import ConfigError
from .logs import ENV_LOG, LogConfig, parse_log_spec, parse_trusted_proxy

__all__ = ["Config", "ConfigError", "keys", "load_config", "parse_listen_address"]

ENV_PREFIX = "WC_"
ENV_CONFIG_FILE = "WC_CONFIG_FILE"

Check = typing.Callable[[Any], Any]


def setting(
    default: Any, help: str, *, check: Check | None = None, secret: bool = False, one_or_list: bool = False
) -> Any:
    """Declare a configuration key: its default, its meaning and how its value is checked.

    ``one_or_list`` lets a list key also be given as one TOML string (a list of one), for
    keys that were a single string before they became lists. A ``secret`` key (keys,
    passwords, URLs that may hold one) is left out of its section's ``repr``.
    """
    meta = {"help": help, "check": check, "secret": secret, "one_or_list": one_or_list}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


# --- value checks: return the normalised value or raise ValueError("expected ...") ---


def _positive(value: float) -> float:
    if not value > 0 or not math.isfinite(value):
        raise ValueError("expected a number greater than 0")
    return value


def _non_negative(value: float) -> float:
    if not value >= 0 or not math.isfinite(value):
        raise ValueError("expected a number of 0 or more")
    return value


MAX_TTL_SECONDS = 10 * 366 * 24 * 3600


def _ttl(value: int) -> int:
    if not 0 < value <= MAX_TTL_SECONDS:
        raise ValueError(f"expected seconds from 1 to {MAX_TTL_SECONDS} (10 years)")
    return value


_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")

MIN_SECRET_LENGTH = 8
"""Every API key and signing secret has at least this many characters: a list given as
comma-separated text must never split one strong secret into weak ones (``Kx9,p``)."""


def _long_enough(kind: str, secret: str) -> None:
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"expected every {kind} to have at least {MIN_SECRET_LENGTH} characters; one has {len(secret)}"
        )


def _api_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    for key in keys:
        if not _TOKEN_CHARS.fullmatch(key):
            raise ValueError("expected keys of visible ASCII characters (no spaces)")
        _long_enough("key", key)
    return keys


class EntryProblem(ValueError):
    """A problem with one field of one entry of a list of tables, e.g. ``[2].scopes``: the
    error names the entry and field, not the value (it may hold a key)."""

    def __init__(self, at: str, message: str) -> None:
        super().__init__(message)
        self.at = at


_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEY_FIELDS = ("name", "key", "scopes", "channels", "max_publish_rate")
_REQUIRED_KEY_FIELDS = ("name", "key", "scopes")
MAX_PREFIX_CHANNEL_ID_LENGTH = 100
"""A key's channel prefix leaves room for a generated id (22 characters) within the 128 of an id."""


def _channel_prefixes(at: str, value: Any) -> tuple[str, ...]:
    """``channels``: a non-empty list of channel-id prefixes, each itself valid in an id."""
    from .names import MAX_CHANNEL_ID_LENGTH, validate_channel_id

    if not isinstance(value, list | tuple) or not value or not all(isinstance(p, str) for p in value):
        raise EntryProblem(f"{at}.channels", 'expected a non-empty list of channel-id prefixes, e.g. ["tenant-a:"]')
    for prefix in value:
        try:
            validate_channel_id(prefix)
        except ValueError as exc:
            raise EntryProblem(f"{at}.channels", f"prefix {prefix!r}: {exc}") from None
        if len(prefix) > MAX_PREFIX_CHANNEL_ID_LENGTH:
            raise EntryProblem(
                f"{at}.channels",
                f"expected prefixes of at most {MAX_PREFIX_CHANNEL_ID_LENGTH} characters "
                f"(ids have {MAX_CHANNEL_ID_LENGTH})",
            )
    if len(set(value)) < len(value):
        raise EntryProblem(f"{at}.channels", "a prefix is listed twice")
    return tuple(value)


def _publish_rate(at: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise EntryProblem(f"{at}.max_publish_rate", "expected messages per second, a number greater than 0")
    return float(value)


def _named_keys(value: Any) -> tuple[ApiKey, ...]:
    """``[[channel.keys]]``: a list of tables with a log-safe ``name``, a ``key`` and its ``scopes``."""
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list of tables, e.g. [[channel.keys]] with name, key and scopes")
    entries: list[ApiKey] = []
    for index, entry in enumerate(value):
        at = f"[{index}]"
        if not isinstance(entry, dict):
            raise EntryProblem(at, "expected a table with name, key and scopes")
        for field_name in entry:
            if field_name not in _KEY_FIELDS:
                raise EntryProblem(f"{at}.{field_name}", f"unknown field (known: {', '.join(_KEY_FIELDS)})")
        for field_name in _REQUIRED_KEY_FIELDS:
            if field_name not in entry:
                raise EntryProblem(f"{at}.{field_name}", "missing")
        name, key, scopes = entry["name"], entry["key"], entry["scopes"]
        if not isinstance(name, str) or not _KEY_NAME.fullmatch(name):
            raise EntryProblem(
                f"{at}.name", "expected 1 to 64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        if name == API_KEYS_LABEL:
            raise EntryProblem(f"{at}.name", f"{API_KEYS_LABEL!r} is reserved for the keys of channel.api_keys")
        if any(other.name == name for other in entries):
            raise EntryProblem(f"{at}.name", f"{name!r} is the name of an earlier entry; names must be unique")
        if not isinstance(key, str) or not _TOKEN_CHARS.fullmatch(key):
            raise EntryProblem(f"{at}.key", "expected a key of visible ASCII characters (no spaces)")
        if len(key) < MIN_SECRET_LENGTH:
            raise EntryProblem(f"{at}.key", f"expected at least {MIN_SECRET_LENGTH} characters; it has {len(key)}")
        if any(other.key == key for other in entries):
            raise EntryProblem(f"{at}.key", "the same key as an earlier entry; every key must be different")
        if not isinstance(scopes, list | tuple) or not scopes or not all(isinstance(s, str) for s in scopes):
            raise EntryProblem(f"{at}.scopes", f"expected a non-empty list of: {', '.join(API_KEY_ACTIONS)}")
        unknown = [s for s in scopes if s not in API_KEY_ACTIONS]
        if unknown:
            raise EntryProblem(f"{at}.scopes", f"unknown scope {unknown[0]!r} (known: {', '.join(API_KEY_ACTIONS)})")
        channels = _channel_prefixes(at, entry["channels"]) if "channels" in entry else ()
        rate = _publish_rate(at, entry["max_publish_rate"]) if "max_publish_rate" in entry else None
        entries.append(ApiKey(name, key, frozenset(scopes), channels, rate))
    return tuple(entries)


def _secret_keys(keys: tuple[str, ...]) -> tuple[str, ...]:
    for key in keys:
        _long_enough("secret", key)
    return keys


def _secret_key(key: str) -> str:
    if len(key) < MIN_SECRET_LENGTH:
        raise ValueError(f"expected a secret of at least {MIN_SECRET_LENGTH} characters; it has {len(key)}")
    return key


def parse_listen_address(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (IPv4, ``[IPv6]`` or ``localhost``) into an IP literal and a port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError("expected HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:8080")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        family = 6
    else:
        family = 4
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("expected an IP address host (127.0.0.1, 0.0.0.0, [::1], [::]), e.g. 127.0.0.1:8080") from None
    if address.version != family:
        raise ValueError("expected an IPv6 host in brackets, e.g. [::1]:8080")
    return str(address), int(port_text)


def _listen_address(text: str) -> str:
    parse_listen_address(text)
    return text


def _origins(origins: tuple[str, ...]) -> tuple[str, ...]:
    """Only what a browser sends in ``Origin``: scheme, host, optional valid port."""
    for origin in origins:
        parts = urlsplit(origin)
        try:
            parts.port  # noqa: B018  (raises for a port out of range)
        except ValueError:
            parts = parts._replace(netloc="")
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path
            or parts.query
            or parts.fragment
            or "#" in origin
            or "@" in parts.netloc
        ):
            raise ValueError(f"expected origins like https://app.example.com, got {origin!r}")
    return origins


def _trusted_proxies(entries: tuple[str, ...]) -> tuple[str, ...]:
    for entry in entries:
        parse_trusted_proxy(entry)
    return entries


def _hosts(hosts: tuple[str, ...]) -> tuple[str, ...]:
    if not hosts or any(not host.strip() for host in hosts):
        raise ValueError('expected a non-empty list of host names ("*" allows any)')
    return hosts


def _redis_url_problem(url: str) -> str | None:
    """What is wrong with one Redis URL (never quoting it: it may hold a password), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises for a port out of range)
    except ValueError:
        return "expected a redis://, rediss:// or unix:// URL with a valid host and port"
    if parts.scheme not in ("redis", "rediss", "unix") or parts.fragment or any(c.isspace() for c in url):
        return "expected a redis://, rediss:// or unix:// URL"
    if parts.scheme == "unix":
        return None if parts.path else "expected unix:///path/to/redis.sock"
    if not parts.hostname:
        return "expected a host in the URL, e.g. redis://127.0.0.1:6379/0"
    if parts.path not in ("", "/") and not re.fullmatch(r"/\d+", parts.path):
        return "expected a database number as the URL's path, e.g. redis://127.0.0.1:6379/0"
    return None


def _redis_urls(urls: tuple[str, ...]) -> tuple[str, ...]:
    for position, url in enumerate(urls, 1):
        problem = _redis_url_problem(url)
        if problem:
            raise ValueError(f"URL {position} of {len(urls)}: {problem}" if len(urls) > 1 else problem)
    if len(set(urls)) < len(urls):
        raise ValueError("expected every Redis server once (a URL is listed twice)")
    return urls


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (a name, an IPv4 address or ``[IPv6]``) into a host and a port."""
    host, sep, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ValueError("expected HOST:PORT entries with a port from 1 to 65535")
    if not re.fullmatch(r"[A-Za-z0-9._:-]+", host):
        raise ValueError("expected HOST:PORT entries with a host name or IP address")
    return host, int(port_text)


def _sentinels(addresses: tuple[str, ...]) -> tuple[str, ...]:
    for address in addresses:
        parse_host_port(address)
    if len(set(addresses)) < len(addresses):
        raise ValueError("expected every sentinel once (an address is listed twice)")
    return addresses


def _master_name(name: str) -> str:
    if not _TOKEN_CHARS.fullmatch(name):
        raise ValueError("expected the master's name as the sentinels know it (visible ASCII, no spaces)")
    return name


MAX_PREFIX_LENGTH = 32
_PREFIX = re.compile(r"[A-Za-z0-9.-]+(?:_[A-Za-z0-9.-]+)*")


def _redis_prefix(prefix: str) -> str:
    """Characters channel-layer names allow, without ``__`` or a trailing ``_``: channels_redis
    appends ``__group__`` to the prefix, so the first ``__`` of a Redis channel name ends the
    prefix and no deployment's channel can be another prefix's."""
    if len(prefix) > MAX_PREFIX_LENGTH or not _PREFIX.fullmatch(prefix):
        raise ValueError(
            f"expected 1 to {MAX_PREFIX_LENGTH} ASCII letters, digits, '.' or '-', with single '_' "
            "between them (e.g. webchannel-prod)"
        )
    return prefix


def _ca_file(path: str) -> str:
    """The CA file must load now, not at the first TLS handshake minutes later."""
    try:
        ssl.create_default_context(cafile=path)
    except ssl.SSLError:  # before OSError, its base class
        raise ValueError("expected PEM CA certificates in the file (none could be loaded)") from None
    except OSError as exc:
        raise ValueError(f"expected a readable CA certificate file ({exc.strerror or exc})") from None
    return path


# --- the keys ---------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    """``[server]``: the listening socket, HTTP policy and WebSocket housekeeping."""

    listen_address: str = setting(
        "127.0.0.1:8080",
        "Address `manage.py serve` listens on: HOST:PORT, IPv6 as [::1]:8080.",
        check=_listen_address,
    )
    allowed_hosts: tuple[str, ...] = setting(
        ("*",), 'Django ALLOWED_HOSTS: Host header values accepted ("*" = any).', check=_hosts
    )
    cors_origins: tuple[str, ...] = setting(
        (), "Origins allowed to call the HTTP API from a browser (CORS).", check=_origins
    )
    cors_allow_any_origin: bool = setting(False, "Allow any origin (CORS); overrides cors_origins.")
    ping_interval: float = setting(
        20.0, "Seconds between keepalive pings to each subscriber (a comment on an event stream).", check=_positive
    )
    ping_timeout: float = setting(30.0, "Seconds to wait for a pong before dropping a subscriber.", check=_positive)
    max_backlog_bytes: int = setting(
        4 * 1024 * 1024,
        "Bytes of messages that may wait for one subscriber; past it the subscriber is closed "
        "with 4008 (too slow). At least channel.max_message_size.",
        check=_positive,
    )
    max_connections: int = setting(
        10000,
        "Subscriber sockets and event streams one process holds at most, together; further "
        "handshakes are refused (403), further event streams get 503.",
        check=_positive,
    )
    drain_window: float = setting(
        2.0,
        "On SIGTERM, subscriber sockets are closed (1012) and event streams ended, spread over this many seconds.",
        check=_non_negative,
    )
    access_log: bool = setting(True, "Log one line per HTTP request and WebSocket (secrets redacted).")
    request_head_timeout: float = setting(
        10.0,
        "Seconds a client has to send a complete request head (request line and headers); a "
        "connection that has not is dropped (slow-header attacks).",
        check=_positive,
    )
    max_http_connections: int = setting(
        1000,
        "Open HTTP connections one process holds at most, besides subscriber sockets and event "
        "streams; past it an idle keep-alive connection is closed to make room, or the new one "
        "is answered 503.",
        check=_positive,
    )
    max_waiting_publishes: int = setting(
        1000,
        "Publishes with ?wait= that may wait for a subscriber at once in one process; past it 429.",
        check=_positive,
    )
    trusted_proxies: tuple[str, ...] = setting(
        (),
        "Proxies (addresses or networks, e.g. 127.0.0.1, 10.0.0.0/8) whose X-Forwarded-For names the "
        "client in the access log; from any other peer the header is ignored.",
        check=_trusted_proxies,
    )


@dataclass(frozen=True)
class ChannelConfig:
    """``[channel]``: tokens, API keys and message limits."""

    secret_key: str | None = setting(
        None,
        "HS256 secret for channel tokens (at least 8 characters; 32 or more recommended). Unset: random "
        "per process (tokens die with it).",
        check=_secret_key,
        secret=True,
    )
    previous_secret_keys: tuple[str, ...] = setting(
        (),
        "Former secrets: tokens signed with them still verify (key rotation).",
        check=_secret_keys,
        secret=True,
    )
    api_keys: tuple[str, ...] = setting(
        (),
        "API keys with every scope (create, publish, info, close). Unset, and no channel.keys "
        "either: one is generated and logged.",
        check=_api_keys,
        secret=True,
    )
    keys: tuple[ApiKey, ...] = setting(
        (),
        "Named API keys limited to scopes, usually written as [[channel.keys]] tables: name (shown in "
        "access-log lines and the key label of webchannel_api_requests_total), key, scopes (any of "
        "create, publish, info, close), optionally channels (channel-id prefixes the key and its "
        "tokens are limited to) and max_publish_rate (messages per second, across all processes). "
        "The tokens a named key creates may subscribe and do only what the key may, and stop working "
        "when it is removed. In the environment: a JSON array of such objects.",
        check=_named_keys,
        secret=True,
    )
    ttl: int = setting(3600, "Token lifetime in seconds (at most 10 years).", check=_ttl)
    max_message_size: int = setting(524288, "Largest published message in bytes; larger gets 413.", check=_positive)


@dataclass(frozen=True)
class RedisConfig:
    """``[redis]``: neither ``url`` nor ``sentinels`` set means the in-process channel layer (one process)."""

    url: tuple[str, ...] = setting(
        (),
        "Redis URL (redis://[user:password@]host:port/0, rediss:// for TLS, unix://), or a list of "
        "URLs: one shard each, channels spread over them; every process must list the same servers "
        "in the same order. Set it to share channels between processes (Redis pub/sub).",
        check=_redis_urls,
        secret=True,
        one_or_list=True,
    )
    sentinels: tuple[str, ...] = setting(
        (),
        "Redis Sentinel addresses (HOST:PORT), instead of url; needs master_name.",
        check=_sentinels,
    )
    master_name: str | None = setting(
        None, "Name of the master the sentinels monitor (with sentinels).", check=_master_name
    )
    prefix: str = setting(
        "webchannel",
        "Start of every Redis pub/sub channel name: deployments sharing a Redis server with "
        "different prefixes never see each other's messages (database numbers do not separate pub/sub).",
        check=_redis_prefix,
    )
    ssl_ca_certs: str | None = setting(
        None,
        "CA certificate file (PEM) that signs the servers' certificates, for rediss:// URLs "
        "whose certificate is not in the system store.",
        check=_ca_file,
    )

    @property
    def enabled(self) -> bool:
        """Channels go through Redis (several processes share them)."""
        return bool(self.url or self.sentinels)


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: protection of ``GET /metrics``."""

    auth_enabled: bool = setting(False, "Require HTTP Basic auth for /metrics.")
    auth_username: str | None = setting(None, "Basic auth user name for /metrics.")
    auth_password: str | None = setting(None, "Basic auth password for /metrics.", secret=True)


@dataclass(frozen=True)
class Config:
    """The whole validated configuration. ``generated`` names keys given random values."""

    server: ServerConfig = field(default_factory=ServerConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    source: str | None = None
    generated: tuple[str, ...] = ()

    @functools.cached_property
    def api_key_entries(self) -> tuple[ApiKey, ...]:
        """Every API key to compare a presented one with: ``channel.api_keys`` (every scope,
        the fixed name ``api_keys``) and the named ``channel.keys``. Built once."""
        every = frozenset(API_KEY_ACTIONS)
        return (*(ApiKey(API_KEYS_LABEL, key, every) for key in self.channel.api_keys), *self.channel.keys)

    @functools.cached_property
    def keyring(self) -> KeyRing:
        """The configured API keys, found by key (``x-api-key``) or by name (a token's ``key`` claim)."""
        return KeyRing(self.api_key_entries)

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """Keys that verify tokens, the signing key first."""
        assert self.channel.secret_key is not None
        return (self.channel.secret_key, *self.channel.previous_secret_keys)


SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "channel": ChannelConfig,
    "redis": RedisConfig,
    "metrics": MetricsConfig,
}


@dataclass(frozen=True)
class Key:
    """One configuration key, as declared in a section dataclass."""

    section: str
    name: str
    kind: Any
    default: Any
    help: str
    check: Check | None
    secret: bool
    one_or_list: bool = False

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def env_name(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}__{self.name.upper()}"


def keys() -> list[Key]:
    """Every configuration key, in declaration order (for docs and tests too)."""
    result = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        defaults = cls()
        for f in dataclasses.fields(cls):
            default = getattr(defaults, f.name)
            result.append(
                Key(
                    section,
                    f.name,
                    hints[f.name],
                    default,
                    f.metadata["help"],
                    f.metadata["check"],
                    f.metadata["secret"],
                    f.metadata["one_or_list"],
                )
            )
    return result


# --- reading values -----------------------------------------------------------------

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _describe(kind: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        tuple[str, ...]: "a list of strings",
        str | None: "a string",
        tuple[ApiKey, ...]: "a list of tables",
    }[kind]


def _from_toml(key: Key, value: Any) -> Any:
    kind = key.kind
    if kind in (str, str | None) and isinstance(value, str):
        return value if value or kind is str else None
    if kind is bool and isinstance(value, bool):
        return value
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == tuple[ApiKey, ...]:
        return value  # checked, entry by entry, by the key's check
    if kind == tuple[str, ...]:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        if isinstance(value, str) and key.one_or_list:
            return (value,) if value else ()
        if isinstance(value, str):
            # Comma-separated text is for environment variables; TOML has arrays.
            raise ValueError('expected a list of strings, e.g. ["a", "b"], not one string')
    raise ValueError("expected a string or a list of strings" if key.one_or_list else f"expected {_describe(kind)}")


def _split_list(text: str) -> tuple[str, ...]:
    """A list from the environment: a JSON array of strings (``["a,b", "c"]``, for values that may
    hold commas, such as secrets), or comma-separated text (``a,b``)."""
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            items = None
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            raise ValueError('expected a JSON array of strings, e.g. ["a,b", "c"], or comma-separated text')
        return tuple(items)
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _from_env(key: Key, text: str) -> Any:
    kind = key.kind
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # os.environ keeps undecodable bytes as lone surrogates
        raise ValueError("expected UTF-8 text") from None
    if kind is str:
        return text
    if kind == str | None:
        return text or None
    if kind is bool:
        if text.strip().lower() in _TRUE | _FALSE:
            return text.strip().lower() in _TRUE
        raise ValueError("expected true or false")
    if kind == tuple[str, ...]:
        return _split_list(text)
    if kind == tuple[ApiKey, ...]:
        if not text.strip():
            return []
        try:
            return json.loads(text)
        except ValueError:
            example = '[{"name": "ci", "key": "...", "scopes": ["publish"]}]'
            raise ValueError(f"expected a JSON array, e.g. {example}") from None
    # int()/float() rather than django-environ's casts, which read "1e3" as 13.0 and "12abc" as 12.0.
    try:
        number = kind(text.strip())
    except (ValueError, OverflowError):
        raise ValueError(f"expected {_describe(kind)}") from None
    if kind is float and not math.isfinite(number):
        raise ValueError(f"expected {_describe(kind)}")
    return number


def _shown(key: Key, value: Any) -> str:
    return "(secret, not shown)" if key.secret else repr(value)


def _apply(key: Key, raw: Any, where: str, convert: typing.Callable[[Key, Any], Any]) -> Any:
    """Convert and check one raw value; ``where`` names its source in the error."""
    try:
        value = convert(key, raw)
        return key.check(value) if key.check and value is not None else value
    except EntryProblem as exc:
        location = where if where.endswith(key.dotted) else f"{where}: {key.dotted}"
        raise ConfigError(f"{location}{exc.at}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}, got {_shown(key, raw)}") from None


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 text") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


Values = dict[str, tuple[Any, str]]
"""Dotted key -> (value, where it was set: a file path or an environment variable)."""


def _file_values(path: str, by_name: Mapping[str, Key]) -> Values:
    values = {}
    for section, table in _read_file(path).items():
        if section not in SECTIONS:
            raise ConfigError(f"{path}: unknown section {section!r} (known: {', '.join(SECTIONS)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {section}: expected a [{section}] table")
        for name, raw in table.items():
            key = by_name.get(f"{section}.{name}")
            if key is None:
                raise ConfigError(f"{path}: unknown key {f'{section}.{name}'!r}")
            values[key.dotted] = (_apply(key, raw, f"{path}: {key.dotted}", _from_toml), path)
    return values


def _env_values(environ_: Mapping[str, str], by_name: Mapping[str, Key], env_file: str | None = None) -> Values:
    """The ``WC_SECTION__KEY`` variables of ``environ_``; ``env_file`` names the .env file they came from, if any."""
    by_env = {key.env_name: key for key in by_name.values()}
    values = {}
    for env_name in sorted(environ_):
        if not env_name.startswith(ENV_PREFIX) or "__" not in env_name:
            continue
        where = f"{env_file}: {env_name}" if env_file else env_name
        key = by_env.get(env_name)
        if key is None:
            raise ConfigError(f"{where if env_file else repr(env_name)}: unknown configuration variable")
        values[key.dotted] = (_apply(key, environ_[env_name], where, _from_env), where)
    return values


def load_config(path: str | None, environ_: Mapping[str, str], env_file: EnvFile | None = None) -> Config:
    """Read defaults, then ``path`` (TOML) if given, then ``WC_*`` variables; validate; fill secrets.

    ``path`` falls back to ``WC_CONFIG_FILE``. ``env_file`` holds the variables of a ``.env``
    file (read by :func:`channels_api.envfile.read_env_file`): they count as environment
    variables, except where ``environ_`` sets the same name, and errors name the file.
    """
    from_file = {k: v for k, v in env_file.values.items() if k not in environ_} if env_file else {}

    def variable(name: str) -> tuple[str | None, str]:
        if name in environ_:
            return environ_[name], name
        if env_file is not None and name in from_file:
            return from_file[name], f"{env_file.path}: {name}"
        return None, name

    path = path or variable(ENV_CONFIG_FILE)[0] or None
    by_name = {key.dotted: key for key in keys()}
    values: Values = {}
    if path:
        values.update(_file_values(path, by_name))
    if env_file is not None:
        values.update(_env_values(from_file, by_name, env_file.path))
    values.update(_env_values(environ_, by_name))
    log_spec, log_source = variable(ENV_LOG)
    log = parse_log_spec(log_spec or "", where=log_source)
    sections = {
        name: cls(**{k.split(".", 1)[1]: v for k, (v, _) in values.items() if k.startswith(name + ".")})
        for name, cls in SECTIONS.items()
    }
    config = Config(**sections, log=log, source=path)
    _check_together(config, {dotted: where for dotted, (_, where) in values.items()})
    return _fill_secrets(config)


def _check_together(config: Config, sources: Mapping[str, str]) -> None:
    """Rules that involve more than one key; errors name where the deciding keys were set."""

    def where(*dotted: str) -> str:
        return ", ".join(dict.fromkeys(sources[k] for k in dotted if k in sources)) or "configuration"

    _check_redis(config, where)
    plain = set(config.channel.api_keys)
    for index, entry in enumerate(config.channel.keys):
        if entry.key in plain:
            raise ConfigError(
                f"{where('channel.keys', 'channel.api_keys')}: channel.keys[{index}].key is also in "
                "channel.api_keys; every key must be different"
            )
    if config.server.max_backlog_bytes < config.channel.max_message_size:
        raise ConfigError(
            f"{where('server.max_backlog_bytes', 'channel.max_message_size')}: server.max_backlog_bytes "
            f"({config.server.max_backlog_bytes}) must be at least channel.max_message_size "
            f"({config.channel.max_message_size})"
        )
    metrics = config.metrics
    if metrics.auth_enabled and not (metrics.auth_username and metrics.auth_password):
        raise ConfigError(
            f"{where('metrics.auth_enabled')}: metrics.auth_enabled needs metrics.auth_username and "
            "metrics.auth_password"
        )


def _check_redis(config: Config, where: typing.Callable[..., str]) -> None:
    """Which Redis (url or sentinels), the keys each needs, and the secret every process must share."""
    redis = config.redis
    if redis.url and redis.sentinels:
        raise ConfigError(f"{where('redis.url', 'redis.sentinels')}: set redis.url or redis.sentinels, not both")
    if redis.sentinels and not redis.master_name:
        raise ConfigError(f"{where('redis.sentinels')}: redis.sentinels needs redis.master_name")
    if redis.master_name and not redis.sentinels:
        raise ConfigError(f"{where('redis.master_name')}: redis.master_name is only used with redis.sentinels")
    if redis.ssl_ca_certs and not any(urlsplit(url).scheme == "rediss" for url in redis.url):
        raise ConfigError(
            f"{where('redis.ssl_ca_certs')}: redis.ssl_ca_certs is only used with rediss:// URLs in redis.url"
        )
    if redis.enabled and not config.channel.secret_key:
        key = "redis.url" if redis.url else "redis.sentinels"
        raise ConfigError(
            f"{where(key)}: channel.secret_key must be set when {key} is set "
            "(every process must sign and verify tokens with the same secret)"
        )


def _fill_secrets(config: Config) -> Config:
    generated = []
    channel = config.channel
    if not channel.secret_key:
        channel = dataclasses.replace(channel, secret_key=secrets.token_urlsafe(32))
        generated.append("channel.secret_key")
    if not channel.api_keys and not channel.keys:
        channel = dataclasses.replace(channel, api_keys=(secrets.token_urlsafe(24),))
        generated.append("channel.api_keys")
    return dataclasses.replace(config, channel=channel, generated=tuple(generated))
