"""The one route table: every URL webchannel answers, by whom, with which methods, and how large
a body each may send.

Django's URLconf (:mod:`.urls`), the WebSocket router (:mod:`.routing`), the body limits enforced
below Django (:mod:`.limits` and webchannel's server, before a body is read) and the OpenAPI
checks are all built from :data:`ROUTES`, so a route is added, renamed or limited in one place.
Paths use Django's ``path()`` syntax; this module imports nothing from Django, so the server's
protocols may ask it before any request reaches Django.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

__all__ = ["CREATE_BODY_LIMIT", "OTHER_BODY_LIMIT", "ROUTES", "Body", "Route", "body_limit"]

CREATE_BODY_LIMIT = 16 * 1024
"""Largest accepted body of ``POST /webchannel/v1/channels``: an id and a few fields fit many times over."""
OTHER_BODY_LIMIT = 16 * 1024
"""Largest body of any other request (they carry none, or little)."""


class Body(Enum):
    """What bounds a route's request bodies."""

    MESSAGE = "message"
    """``channel.max_message_size`` (publishing, and the last message of a close)."""
    CREATE = "create"
    """:data:`CREATE_BODY_LIMIT`."""
    OTHER = "other"
    """:data:`OTHER_BODY_LIMIT`."""


@dataclass(frozen=True)
class Route:
    """One URL pattern and what answers it."""

    name: str
    """Django's URL name; also the ``view`` label of the HTTP response metrics."""
    path: str
    """The pattern, in Django's ``path()`` syntax, without the leading ``/``."""
    view: str | None
    """The dotted path of the HTTP view, if plain HTTP requests are answered."""
    methods: tuple[str, ...] = ()
    """The HTTP methods the view answers (others get 405 with ``Allow``)."""
    consumer: str | None = None
    """The dotted path of the WebSocket consumer, if the URL is also a WebSocket endpoint."""
    body: Body = Body.OTHER
    """What bounds a body, for the methods in :attr:`bodied` (every other method: :data:`OTHER_BODY_LIMIT`)."""
    bodied: tuple[str, ...] = ()

    @property
    def regex(self) -> re.Pattern[str]:
        """The pattern as a regular expression over a request's path (with its leading ``/``)."""

        def group(match: re.Match[str]) -> str:
            return f"(?P<{match.group(2)}>{'.+' if match.group(1) == 'path' else '[^/]+'})"

        pattern = re.sub(r"<(?:(\w+):)?(\w+)>", group, re.escape("/" + self.path))
        return re.compile(pattern)


ROUTES: tuple[Route, ...] = (
    Route(
        "create_channel",
        "webchannel/v1/channels",
        "channels_api.views.create_channel",
        ("POST",),
        body=Body.CREATE,
        bodied=("POST",),
    ),
    # Before the channel's own route: its <path:...> would take the stream's URL too.
    Route(
        "channel_events", "webchannel/v1/channels/<path:channel_id>/events", "channels_api.sse.channel_events", ("GET",)
    ),
    Route(
        # info (GET), publish (POST) and close (DELETE); named "publish", the metrics' view label
        "publish",
        "webchannel/v1/channels/<path:channel_id>",
        "channels_api.views.channel",
        ("GET", "POST", "DELETE"),
        consumer="channels_api.consumers.SubscriberConsumer",
        body=Body.MESSAGE,
        bodied=("POST", "DELETE"),
    ),
    Route("client_js", "webchannel/v1/client.js", "channels_api.client_js.client_js", ("GET", "HEAD")),
    Route("openapi", "webchannel/v1/openapi.json", "channels_api.openapi.openapi_document", ("GET", "HEAD")),
    Route("healthz", "healthz", "channels_api.views.healthz", ("GET", "HEAD")),
    Route("readyz", "readyz", "channels_api.views.readyz", ("GET", "HEAD")),
    Route("metrics", "metrics", "channels_api.views.metrics_view", ("GET",)),
)

_MATCHERS = tuple((route, route.regex) for route in ROUTES)


def route_of(path: str) -> Route | None:
    """The route answering ``path`` (its query string excluded), or None."""
    for route, regex in _MATCHERS:
        if regex.fullmatch(path):
            return route
    return None


def body_limit(method: str, path: str, max_message_size: int) -> int | None:
    """The largest body accepted for ``method`` on ``path``: ``channel.max_message_size`` for a
    publish and a close (whose body is the channel's last message); None for a path that is not
    webchannel's (a host project's own, when webchannel is embedded in one)."""
    route = route_of(path.partition("?")[0])
    if route is None:
        return None
    if method not in route.bodied:
        return OTHER_BODY_LIMIT
    if route.body is Body.MESSAGE:
        return max_message_size
    return CREATE_BODY_LIMIT if route.body is Body.CREATE else OTHER_BODY_LIMIT
