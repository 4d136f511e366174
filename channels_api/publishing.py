"""Creating a channel and publishing to it: the one implementation behind the HTTP views and
the in-process API (``channels_api.publish``, ``publish_sync``, ``create_channel``).

The views add what belongs to HTTP (credentials, the path and body, problem+json); every
rule about the message itself (the channel id, the size limit, the 2 s bound on the channel
layer, the metrics) lives here, so Django code in a worker process publishes under exactly
the rules an HTTP publisher does.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TypedDict

from asgiref.sync import async_to_sync

from . import metrics
from .auth import SUBSCRIBE_SCOPE, ApiKey, issue_token, narrowed_token
from .config import Config
from .events import RelayClose, RelayMessage, RequestState, relay_message
from .exceptions import LayerUnavailable, WebchannelError
from .names import generate_channel_id, group_name, validate_channel_id
from .runtime import Runtime, runtime

PUBLISH_TIMEOUT_SECONDS = 2.0
"""A publish the channel layer has not taken by then fails (503 over HTTP) instead of hanging."""


class MessageTooLarge(WebchannelError, ValueError):
    """The message is larger than ``channel.max_message_size`` (413 over HTTP)."""


class CreatedChannel(TypedDict):
    """What creating a channel answers: the id, a token for every action on it (for a named
    key: every action the key has), its expiry (ISO 8601, UTC), and a token with the same
    expiry that may only subscribe (for a browser)."""

    channelId: str
    token: str
    expiresAt: str
    subscribeToken: str


def new_channel(channel_id: str | None = None) -> CreatedChannel:
    """Issue a token for every action on ``channel_id`` (validated), or on a freshly generated id.

    For trusted code (the in-process API): the token is as full as one of ``channel.api_keys``.
    """
    channel_id = generate_channel_id() if channel_id is None else validate_channel_id(channel_id)
    return _created(channel_id, None)


def new_channel_for_key(key: ApiKey, channel_id: str | None = None) -> CreatedChannel:
    """What a create authenticated by ``key`` answers, for ``channel_id`` (validated, and allowed
    to the key by the caller) or for a generated id starting with the key's first prefix.

    The tokens never exceed the key: those of a named key carry its name and, in ``scope``,
    only the actions its own scopes allow (plus subscribe). Their ``cid`` is within the key's
    prefixes by construction, so they reach no channel the key itself could not.
    """
    if channel_id is None:
        channel_id = (key.channels[0] if key.channels else "") + generate_channel_id()
    return _created(validate_channel_id(channel_id), key if key.named else None)


def _created(channel_id: str, key: ApiKey | None) -> CreatedChannel:
    config = runtime().config
    secret = config.secret_keys[0]
    scope, name = (key.token_scope, key.name) if key is not None else (None, None)
    issued = issue_token(channel_id, secret, config.channel.ttl, scope=scope, key=name)
    metrics.channels_created.inc()
    expires_at = datetime.fromtimestamp(issued.expires_at, UTC).isoformat().replace("+00:00", "Z")
    subscribe_token = narrowed_token(issued.token, secret, SUBSCRIBE_SCOPE)
    return {"channelId": channel_id, "token": issued.token, "expiresAt": expires_at, "subscribeToken": subscribe_token}


def check_message_size(data: bytes, config: Config) -> None:
    """Refuse a message over ``channel.max_message_size`` with a message that names both sizes."""
    limit = config.channel.max_message_size
    if len(data) > limit:
        raise MessageTooLarge(f"the message is {len(data)} bytes; channel.max_message_size is {limit}")


async def send_to_channel(
    state: Runtime, channel_id: str, event: RelayMessage | RelayClose, request: RequestState | None = None
) -> None:
    """Hand ``event`` (a message, or the channel's close with its last message) to every subscriber
    of the already validated ``channel_id``: the one way publish, close and the in-process API
    reach the channel layer.

    Over HTTP under webchannel's server, ``request`` (the request's ``webchannel.request``
    extension) is committed before the event goes to the layer, and once the server drains no
    backpressure wait holds the answer back. Raises :class:`MessageTooLarge`, or
    :class:`LayerUnavailable` when the channel layer fails or has not taken the event within
    :data:`PUBLISH_TIMEOUT_SECONDS`, or when the server stopping has already answered the request.
    """
    data = event.get("data")
    if data is not None:
        check_message_size(data, state.config)
    layer = state.layer
    group = group_name(channel_id)
    if request is not None and not request.commit():
        raise LayerUnavailable("the server is stopping; retry")  # what the server already answered
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
            await layer.group_send(group, event)  # type: ignore[arg-type]
    except Exception as exc:  # the layer's errors are its own (redis, OS, timeout): all mean unavailable
        state.outage.failed("publish", exc)
        raise LayerUnavailable("the channel layer is unavailable; retry later") from exc
    state.outage.succeeded()
    if data is not None:
        metrics.messages_published.inc()
        metrics.messages_published_bytes.inc(len(data))
    # Return no faster than this process delivers; a draining server answers at once.
    await layer.backpressure(group, None if request is None else request.draining)


def message(data: bytes) -> RelayMessage:
    """A published message, stamped with the wall-clock time (its subscribers may be in another
    process, through Redis) for ``webchannel_delivery_lag_seconds``."""
    return relay_message(data, time.time())


async def publish(channel_id: str, data: bytes) -> int:
    """Publish ``data`` to the subscribers of ``channel_id`` through the configured channel layer;
    return how many subscribers the channel has, in every process (as ``Webchannel-Subscribers``).

    The count is asked of Redis after the message is sent, not taken from this process's
    cache: a worker process that publishes now and then keeps no cache of the others.
    Raises :class:`~channels_api.exceptions.InvalidChannelId`, :class:`MessageTooLarge` or
    :class:`~channels_api.exceptions.LayerUnavailable`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    channel_id = validate_channel_id(channel_id)
    state = runtime()
    await send_to_channel(state, channel_id, message(bytes(data)))
    return await state.presence.count_now(group_name(channel_id))


def publish_sync(channel_id: str, data: bytes) -> int:
    """:func:`publish` for synchronous code (a management command, a task queue worker)."""
    return async_to_sync(publish)(channel_id, data)  # type: ignore[no-any-return]
