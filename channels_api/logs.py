"""Logging: the ``LOGGING`` setting from ``WC_LOG`` and an access log that never shows secrets.

Imports nothing from Django (the settings module uses it before Django is set up).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
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


def log_action(protocol: str, action: str, details: dict[str, Any]) -> None:
    """Daphne's ``action_logger``: one line per HTTP request and WebSocket event."""
    path = redact_path(str(details.get("path", "")))
    client = details.get("client") or "-"
    if protocol == "http" and action == "complete":
        access_logger.info(
            '%s "%s %s" %s %s %.1fms',
            client,
            details.get("method"),
            path,
            details.get("status"),
            details.get("size"),
            (details.get("time_taken") or 0) * 1000,
        )
    elif protocol == "websocket" and action != "connecting":
        access_logger.info('%s "WS %s" %s', client, path, action)
