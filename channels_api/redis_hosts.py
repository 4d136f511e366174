"""The ``[redis]`` configuration as channels_redis host entries, and Redis addresses fit to show.

channels_redis's pub/sub layer takes a list of ``hosts``, one shard each (a channel's server is
chosen by a consistent hash of its Redis channel name): ``{"address": URL, **connection
options}`` for a server, or ``{"sentinels": [(host, port)], "master_name": ...,
"sentinel_kwargs": {...}, **connection options}`` for a master found through Redis Sentinel.
Nothing here imports redis-py or channels_redis, so settings and tests use it freely.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .config import parse_host_port

if TYPE_CHECKING:
    from .config import RedisConfig

__all__ = ["RedisTarget", "describe_host", "first_server", "layer_hosts", "redact_url"]

CONNECT_TIMEOUT_SECONDS = 2
"""A server that does not accept a connection within this counts as down (publish 503, subscribe 4013)."""
HEALTH_CHECK_INTERVAL_SECONDS = 10
"""An idle connection, the pub/sub one included, PINGs before use after this long, so a dead one is redialled."""
SENTINEL_TIMEOUT_SECONDS = 2
"""Connecting to and asking one sentinel; past it the next sentinel is asked."""

REDACTED = "***"

RedisTarget = tuple[dict[str, Any], str]
"""A channels_redis host entry and the ``redis.prefix`` keys start with."""


def layer_hosts(redis: RedisConfig) -> list[dict[str, Any]]:
    """The ``hosts`` list of channels_redis's layer: one entry per server in ``redis.url``, or
    one Sentinel entry."""
    common: dict[str, Any] = {
        "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
    }
    if redis.sentinels:
        sentinel_kwargs = {
            "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
            "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
        }
        return [
            {
                "sentinels": [parse_host_port(address) for address in redis.sentinels],
                "master_name": redis.master_name,
                "sentinel_kwargs": sentinel_kwargs,
                **common,
            }
        ]
    hosts = []
    for url in redis.url:
        entry = {"address": url, **common}
        if redis.ssl_ca_certs and urlsplit(url).scheme == "rediss":  # a plain connection takes no TLS options
            entry["ssl_ca_certs"] = redis.ssl_ca_certs
        hosts.append(entry)
    return hosts


def first_server(redis: RedisConfig) -> RedisTarget | None:
    """Where the state shared between processes (presence's counts, publish rates) lives: the
    first server of ``redis.url`` (or the Sentinel master), with ``redis.prefix``; None without Redis."""
    return (layer_hosts(redis)[0], redis.prefix) if redis.enabled else None


def redact_url(url: str) -> str:
    """``url`` with its password (and any ``password`` query value) replaced by ``***``.

    ``redis://user:pw@host:6379/0`` becomes ``redis://user:***@host:6379/0``. A user part
    without a colon is hidden too: some write the password there.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    userinfo, at, hostport = parts.netloc.rpartition("@")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secret_query = any("pass" in name.lower() for name, _ in pairs)
    if not at and not secret_query:
        return url  # nothing to hide (and urlunsplit would drop the "//" of unix:///path)
    netloc = parts.netloc
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{hostport}" if colon else f"{REDACTED}@{hostport}"
    query = parts.query
    if secret_query:
        query = urlencode([(k, REDACTED if "pass" in k.lower() else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def describe_host(host: Mapping[str, Any]) -> str:
    """One host entry as logs and error details name it, without secrets."""
    if "address" in host:
        return redact_url(str(host["address"]))
    if "sentinels" in host:
        sentinels = ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in host["sentinels"])
        return f"master {host.get('master_name')!r} via sentinels {sentinels}"
    return f"{host.get('host', 'localhost')}:{host.get('port', 6379)}"
