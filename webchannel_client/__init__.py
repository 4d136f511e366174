"""A Python client for webchannel: create channels, publish, count subscribers, close, subscribe.

>>> from webchannel_client import Client
>>> with Client("http://127.0.0.1:8080", api_key="...") as client:
...     channel = client.create_channel()
...     client.publish(channel.channel_id, b'{"progress": 42}')

:class:`AsyncClient` has the same methods, awaitable, and ``subscribe(channel_id, token)``, an
async iterator of the channel's messages. Every failure is a :class:`WebchannelError`.
Depends only on httpx and websockets.
"""

from ._async import AsyncClient
from ._sync import Client
from .errors import WebchannelError
from .models import Channel
from .subscription import Subscription

__all__ = ["AsyncClient", "Channel", "Client", "Subscription", "WebchannelError"]
