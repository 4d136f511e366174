"""Logging: the ``LOGGING`` setting from ``WC_LOG`` and an access log that never shows secrets.

The access log names the client by its TCP peer, or, when that peer is a trusted proxy
(``server.trusted_proxies``), by the address the proxies forwarded in ``X-Forwarded-For``;
a refused WebSocket handshake says why. Imports nothing from Django (the settings module
uses it before Django is set up).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

from .exceptions import ConfigError

ENV_LOG = "WC_LOG"
DEFAULT_LOG_LEVEL = "INFO"
LEVEL_OFF = logging.CRITICAL + 10
"""``off``: above every level, so nothing is logged."""

_LEVELS: dict[str, str | int] = {
    "trace": "DEBUG",
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "critical": "CRITICAL",
    "off": LEVEL_OFF,
}
_LOGGER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


@dataclass(frozen=True)
class LogConfig:
    """Levels from ``WC_LOG`` (env_logger syntax): a default and per-logger overrides."""

    level: str | int = DEFAULT_LOG_LEVEL
    loggers: tuple[tuple[str, str | int], ...] = ()


def parse_log_spec(text: str, where: str = ENV_LOG) -> LogConfig:
    """Parse ``WC_LOG`` like env_logger: ``debug`` or ``channels_api=debug,django=warning``.

    ``where`` names the variable's source in the error (``WC_LOG``, or ``.env: WC_LOG``).
    """
    level: str | int = DEFAULT_LOG_LEVEL
    loggers: list[tuple[str, str | int]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.rpartition("=")
        if not sep:
            name, value = "", part
        mapped = _LEVELS.get(value.strip().lower())
        if mapped is None or (sep and not _LOGGER_NAME.fullmatch(name.strip())):
            raise ConfigError(
                f"{where}: cannot read {part!r}: expected LEVEL or LOGGER=LEVEL with LEVEL one of "
                "trace, debug, info, warn, error, off"
            )
        if sep:
            loggers.append((name.strip(), mapped))
        else:
            level = mapped
    return LogConfig(level=level, loggers=tuple(loggers))


access_logger = logging.getLogger("webchannel.access")

SECRET_QUERY_NAMES = frozenset({"access_token", "token", "api_key", "x-api-key"})
_QUERY_PARAM = re.compile(r"([?&;])([^&;#=]*)=([^&;#]*)")


def redact_path(path: str) -> str:
    """``path`` with the values of token-bearing query parameters replaced by ``[redacted]``.

    Names are compared as a server reads them: percent-decoded, ``+`` as space, any case.
    """

    def redact(match: re.Match[str]) -> str:
        name = unquote_plus(match.group(2)).strip().lower()
        return f"{match.group(1)}{match.group(2)}=[redacted]" if name in SECRET_QUERY_NAMES else match.group(0)

    head, sep, query = path.partition("?")
    return head + sep + _QUERY_PARAM.sub(redact, "?" + query)[1:] if sep else path


def logging_settings(log: LogConfig) -> dict[str, Any]:
    """Django's ``LOGGING`` dict: one stderr handler, the default level and per-logger levels."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {
                "format": "%(asctime)sZ %(levelname)s [%(process)d] %(name)s: %(message)s",
                "datefmt": "%Y-%m-%dT%H:%M:%S",
            },
        },
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "root": {"handlers": ["stderr"], "level": log.level},
        "loggers": {
            # Django's own handlers would print a second copy of each record.
            "django": {"handlers": [], "level": "NOTSET", "propagate": True},
            # 4xx answers are in the access log already; 5xx (with tracebacks) stay.
            "django.request": {"level": "ERROR"},
            **{name: {"level": level} for name, level in log.loggers},
        },
    }


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxy(entry: str) -> IPNetwork:
    """One ``server.trusted_proxies`` entry, an address (``10.0.0.5``, ``::1``) or a network
    (``10.0.0.0/8``); ValueError when it is neither or has host bits set (``10.0.0.5/8``)."""
    try:
        return ipaddress.ip_network(entry.strip())
    except ValueError:
        raise ValueError(f"expected IP addresses or networks such as 10.0.0.0/8 or ::1, {entry!r} is not one") from None


@lru_cache(maxsize=8)
def trusted_networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """``server.trusted_proxies`` parsed once (the configuration checked the entries already)."""
    return tuple(parse_trusted_proxy(entry) for entry in entries)


def _address(text: str) -> IPAddress | None:
    """An IP from an address field (``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]:80``), else None.

    An IPv4-mapped IPv6 address (a dual-stack socket's peer) counts as its IPv4 address.
    """
    text = text.strip()
    if text.startswith("["):
        text, sep, port = text[1:].partition("]")
        if not sep or (port and not (port[:1] == ":" and port[1:].isdigit())):
            return None
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not port.isdigit():
            return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in networks)


def client_address(peer: str, forwarded_for: Iterable[str], networks: tuple[IPNetwork, ...]) -> str:
    """Who the access log names as the client: ``peer`` (the TCP peer's address) unless it is
    in ``networks`` (the trusted proxies).

    From a trusted peer, ``forwarded_for`` (the ``X-Forwarded-For`` header values, in order)
    is read from the right, where each proxy appended the address it was connected from: the
    first address that is not a trusted proxy is the client. Anything left of it may be
    made up by the client and is ignored. An entry that is not an IP address stops the walk:
    the last trusted hop before it is the client as far as anyone can tell. An empty
    header, or one that lists only garbage, leaves the peer.
    """
    address = _address(peer) if networks else None
    if address is None or not _trusted(address, networks):
        return peer
    chosen = peer
    entries = [entry for value in forwarded_for for entry in value.split(",") if entry.strip()]
    for entry in reversed(entries):
        hop = _address(entry)
        if hop is None:
            break
        chosen = str(hop)
        if not _trusted(hop, networks):
            break
    return chosen


def forwarded_client(peer: str | None, forwarded_for: Iterable[str], networks: tuple[IPNetwork, ...]) -> str | None:
    """The address a trusted proxy forwarded for the client, to log instead of the peer's
    ``host:port``; None when the peer's own address stands (the usual case costs one check)."""
    if not networks or not peer:
        return None
    chosen = client_address(peer, forwarded_for, networks)
    return None if chosen == peer else chosen


@dataclass(frozen=True)
class AccessNote:
    """What Daphne's log calls cannot pass to :func:`log_action`: set around them by the server's protocols."""

    client: str | None = None
    """The client address forwarded by a trusted proxy, shown instead of the peer's."""
    refusal: str | None = None
    """Why the application refused the WebSocket (a ``RefusalReason`` value)."""
    silent: bool = False
    """The event needs no line of its own (the disconnect of a handshake already logged as refused,
    the end of an event stream, whose line the server writes itself)."""
    key: str | None = None
    """The name of the API key that authenticated the request (or minted its token), never the key."""


_NO_NOTE = AccessNote()
_note: ContextVar[AccessNote] = ContextVar("webchannel_access_note", default=_NO_NOTE)


@contextlib.contextmanager
def access_note(note: AccessNote) -> Iterator[None]:
    """Within the block, access-log lines carry ``note``."""
    token = _note.set(note)
    try:
        yield
    finally:
        _note.reset(token)


REQUEST = "webchannel.request"
"""An ASGI extension of webchannel's own server, in the scope of every HTTP request: a
:class:`~channels_api.events.RequestState` through which the application tells the server what
its access-log line and its drain need to know. Absent under any other server."""


def note_key(scope: Mapping[str, Any], name: str) -> None:
    """The request of ``scope`` was authenticated by the API key called ``name`` (or by a token
    that key minted): its access-log line says ``key=<name>``, never the key itself. Under
    another server (no :data:`REQUEST` extension) nothing is noted."""
    state = scope.get("extensions", {}).get(REQUEST)
    if state is not None:
        state.key_name = name


def log_action(protocol: str, action: str, details: dict[str, Any]) -> None:
    """Daphne's ``action_logger``: one line per HTTP request and WebSocket event.

    A refused WebSocket is one line, ``refused <reason>``, with the reason the application
    gave (the ``reason`` label of ``webchannel_websocket_refused_total``).
    """
    note = _note.get()
    if note.silent:
        return
    path = redact_path(str(details.get("path", "")))
    client = note.client or details.get("client") or "-"
    if protocol == "http" and action == "complete":
        key_name = note.key
        access_logger.info(
            '%s "%s %s" %s %s %.1fms%s',
            client,
            details.get("method"),
            path,
            details.get("status"),
            details.get("size"),
            (details.get("time_taken") or 0) * 1000,
            f" key={key_name}" if key_name else "",
        )
    elif protocol == "websocket" and action != "connecting":
        access_logger.info('%s "WS %s" %s', client, path, f"refused {note.refusal}" if note.refusal else action)
