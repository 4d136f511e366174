"""webchannel: an authenticated, one-way pipe from HTTP publishers to WebSocket subscribers.

Django code publishes in process with :func:`publish` (async), :func:`publish_sync` and
:func:`create_channel`. They are imported on first use, so importing this package needs
no Django settings (``manage.py`` and packaging import it before settings exist).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .exceptions import InvalidChannelId, LayerUnavailable
    from .host_settings import webchannel_settings
    from .publishing import MessageTooLarge, publish, publish_sync
    from .publishing import new_channel as create_channel

__all__ = [
    "InvalidChannelId",
    "LayerUnavailable",
    "MessageTooLarge",
    "create_channel",
    "publish",
    "publish_sync",
    "webchannel_settings",
]

_LAZY = {
    "publish": ("publishing", "publish"),
    "publish_sync": ("publishing", "publish_sync"),
    "create_channel": ("publishing", "new_channel"),
    "MessageTooLarge": ("publishing", "MessageTooLarge"),
    "InvalidChannelId": ("exceptions", "InvalidChannelId"),
    "LayerUnavailable": ("exceptions", "LayerUnavailable"),
    "webchannel_settings": ("host_settings", "webchannel_settings"),
}


def __getattr__(name: str) -> Any:
    """Import the public API on first use (after Django's settings are configured)."""
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(f".{module}", __name__), attribute)
