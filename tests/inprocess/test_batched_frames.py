"""A subscriber that fell behind gets the messages queued for it written together.

webchannel's server names the ``webchannel.send_frames`` extension in the scope; the
consumer then hands the server every message queued behind the one it woke for in one
ASGI message (the server frames them). Without the extension (any other server), each message
goes in a ``websocket.send`` of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from channels_api.events import SEND_FRAMES, relay_close, relay_message
from channels_api.names import group_name
from tests.common import make_token
from tests.harness import timeout
from webchannel_project.asgi import application

from .helpers import channel_path, receive_frame, subscriber


@contextlib.asynccontextmanager
async def batching_subscriber(channel_id: str, query: str = "") -> AsyncIterator[WebsocketCommunicator]:
    """A subscriber on a server that offers the extension, as ``manage.py serve`` does."""
    path = f"{channel_path(channel_id)}?access_token={make_token(channel_id)}{query}"
    communicator = WebsocketCommunicator(application, path)
    communicator.scope["extensions"] = {SEND_FRAMES: {}}
    try:
        connected, _ = await communicator.connect(timeout(5))
        assert connected
        yield communicator
    finally:
        await communicator.disconnect(timeout=timeout(5))


@contextlib.asynccontextmanager
async def plain_subscriber(channel_id: str, query: str) -> AsyncIterator[WebsocketCommunicator]:
    """A subscriber on a server without the extension, with ``query`` added to its URL."""
    path = f"{channel_path(channel_id)}?access_token={make_token(channel_id)}{query}"
    communicator = WebsocketCommunicator(application, path)
    try:
        connected, _ = await communicator.connect(timeout(5))
        assert connected
        yield communicator
    finally:
        await communicator.disconnect(timeout=timeout(5))


async def queue_messages(channel_id: str, bodies: list[bytes]) -> None:
    """Queue every body before the subscriber's relay runs (the in-memory layer does not yield)."""
    layer = get_channel_layer()
    for body in bodies:
        await layer.group_send(group_name(channel_id), relay_message(body))


async def test_messages_queued_behind_the_first_are_handed_over_together_in_order():
    bodies = [b"first", b"", bytes(range(256)), b"last"]
    async with batching_subscriber("batch-order") as sub:
        await queue_messages("batch-order", bodies)
        output = await sub.receive_output(timeout(5))
        assert output == {"type": SEND_FRAMES, "payloads": bodies, "text": False}
        await queue_messages("batch-order", [b"alone"])
        alone = await sub.receive_output(timeout(5))
        assert alone == {"type": SEND_FRAMES, "payloads": [b"alone"], "text": False}  # nothing queued behind it
        assert await sub.receive_nothing()


async def test_a_batch_ends_where_the_channel_is_closed_and_the_close_follows():
    async with batching_subscriber("batch-close") as sub:
        await queue_messages("batch-close", [b"one", b"two"])
        await get_channel_layer().group_send(group_name("batch-close"), relay_close(b"bye"))
        assert await sub.receive_output(timeout(5)) == {
            "type": SEND_FRAMES,
            "payloads": [b"one", b"two"],
            "text": False,
        }
        assert await sub.receive_output(timeout(5)) == {"type": SEND_FRAMES, "payloads": [b"bye"], "text": False}
        closed = await sub.receive_output(timeout(5))
        assert closed["type"] == "websocket.close"
        assert closed["code"] == 4000


async def test_without_the_extension_each_message_is_its_own_frame():
    bodies = [b"a", b"b", b"c"]
    async with subscriber("batch-plain") as sub:
        await queue_messages("batch-plain", bodies)
        assert [await receive_frame(sub) for _ in bodies] == bodies
        assert await sub.receive_nothing()


async def test_text_frame_subscribers_get_their_messages_together_marked_for_text_frames():
    async with batching_subscriber("batch-text", "&frames=text") as sub:
        await queue_messages("batch-text", [b"hello", b"\xff", b"world"])
        output = await sub.receive_output(timeout(5))
        assert output == {"type": SEND_FRAMES, "payloads": [b"hello", b"\xff", b"world"], "text": True}


async def test_without_the_extension_text_frame_subscribers_get_text_or_binary_per_message():
    async with plain_subscriber("plain-text", "&frames=text") as sub:
        await queue_messages("plain-text", [b"hello", b"\xff", b"world"])
        outputs = [await sub.receive_output(timeout(5)) for _ in range(3)]
        assert [o["type"] for o in outputs] == ["websocket.send"] * 3
        assert [o.get("text") or o.get("bytes") for o in outputs] == ["hello", b"\xff", "world"]
