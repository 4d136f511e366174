"""What one webchannel process holds while it serves, created once by the app and reached from it.

The app config (:mod:`channels_api.apps`) builds one :class:`Runtime` from the configuration
when Django starts, and a new one when a test changes ``WEBCHANNEL``; views, consumers and the
in-process API reach it with :func:`runtime`. Nothing here is module state: two runtimes can
live side by side (the tests make their own), and each takes its configuration as an argument.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import cast

from channels.layers import get_channel_layer
from django.apps import apps

from .config import Config
from .delivery_lag import DeliveryLag
from .framing import Encodings
from .layers import WebchannelLayer
from .presence import Presence
from .rates import PublishRates
from .readiness import OutageLog, Readiness
from .redis_hosts import first_server
from .subscription import OpenSubscribers

__all__ = ["Runtime", "runtime"]


@dataclass(eq=False)
class Runtime:
    """The process's state: subscriber counts (here and, through Redis, elsewhere), publish rates,
    readiness, the outage log, the delivery lag, open subscribers, and the encodings of the
    message relayed last."""

    config: Config
    presence: Presence
    rates: PublishRates
    subscribers: OpenSubscribers
    readiness: Readiness = field(default_factory=Readiness)
    outage: OutageLog = field(default_factory=OutageLog)
    delivery_lag: DeliveryLag = field(default_factory=DeliveryLag)
    encodings: Encodings = field(default_factory=Encodings)
    _serving: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: Config) -> Runtime:
        redis = first_server(config.redis)
        limits = {key.name: key.max_publish_rate for key in config.channel.keys if key.max_publish_rate is not None}
        return cls(
            config=config,
            presence=Presence(redis),
            rates=PublishRates(limits, redis),
            subscribers=OpenSubscribers(config.server.max_connections),
        )

    @property
    def layer(self) -> WebchannelLayer:
        """The configured channel layer (the ``channels_api.E002`` check made sure it is a webchannel one)."""
        return cast(WebchannelLayer, get_channel_layer())

    def serve(self) -> None:
        """On the event loop that serves connections: start the background work once (the refresh
        of other processes' subscriber counts). Cheap to call on every connection."""
        loop = asyncio.get_running_loop()
        if self._serving is not loop:
            self._serving = loop
            self.presence.start()


def runtime() -> Runtime:
    """This process's :class:`Runtime`, made by the app when Django started."""
    return cast(Runtime, apps.get_app_config("channels_api").runtime)  # type: ignore[attr-defined]
