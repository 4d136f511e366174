"""Logging: the ``LOGGING`` setting from ``WC_LOG`` and an access log that never shows secrets."""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import unquote_plus

from .config import LogConfig

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
