"""The ASGI interface as webchannel's code speaks it: scopes, events, ``receive``, ``send``, applications.

ASGI scopes and events are dicts whose keys depend on their type (and on extensions, such as
channels' ``url_route`` or webchannel's own ``extensions``), so they are typed as mappings of
strings; the callables around them are typed exactly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, TypeAlias

Scope: TypeAlias = MutableMapping[str, Any]
"""A connection's scope (``type``, ``path``, ``headers``, ...)."""
Message: TypeAlias = Mapping[str, Any]
"""One event received from, or sent to, the server."""
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
"""An ASGI 3 application."""

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]
