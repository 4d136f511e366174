"""The subscriber WebSocket: handshake refusals, binary relay, order, fan-out, close codes, gauge."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from channels_api.events import relay_message
from channels_api.names import group_name
from tests.common import alg_none_token, expired_token, make_token
from tests.harness import API_KEY, timeout
from webchannel_project.asgi import application

from .helpers import API_KEY_HEADERS, channel_path, in_memory_layers, receive_frame, sample, subscriber


async def connect(path: str, headers=None) -> tuple[bool, object]:
    communicator = WebsocketCommunicator(application, path, headers=headers)
    try:
        return await communicator.connect(timeout(5))
    finally:
        await communicator.disconnect(timeout=timeout(5))


def with_token(channel_id: str, token: str) -> str:
    return f"{channel_path(channel_id)}?access_token={token}"


REFUSED = {
    "no-token": lambda: channel_path("sub-refused"),
    "empty-token": lambda: with_token("sub-refused", ""),
    "garbage-token": lambda: with_token("sub-refused", "garbage"),
    "expired-token": lambda: with_token("sub-refused", expired_token("sub-refused")),
    "token-for-another-channel": lambda: with_token("sub-refused", make_token("sub-other")),
    "wrong-secret": lambda: with_token("sub-refused", make_token("sub-refused", secret="x" * 40)),
    "alg-none": lambda: with_token("sub-refused", alg_none_token("sub-refused")),
    "api-key-as-token": lambda: with_token("sub-refused", API_KEY),
    "129-char-id": lambda: with_token("a" * 129, make_token("a" * 129)),
    "whitespace-id": lambda: with_token("a b", make_token("a b")),
    "control-char-id": lambda: with_token("a\x01b", make_token("a\x01b")),
    "slash-id": lambda: "/webchannel/v1/channels/a/b?access_token=" + make_token("a/b"),
    "channels-root": lambda: "/webchannel/v1/channels",
    "unknown-path": lambda: "/other",
    "root": lambda: "/",
}


@pytest.mark.parametrize("path", REFUSED.values(), ids=REFUSED.keys())
async def test_subscribe_handshake_is_refused(path):
    connected, _ = await connect(path())
    assert connected is False


async def test_subscribe_refuses_a_bearer_header_with_a_token_for_another_channel():
    headers = [(b"authorization", f"Bearer {make_token('sub-other')}".encode())]
    connected, _ = await connect(channel_path("sub-hdr"), headers=headers)
    assert connected is False


async def test_subscribe_with_access_token_query_parameter_is_accepted():
    async with subscriber("sub-query", make_token("sub-query")) as sub:
        await get_channel_layer().group_send(group_name("sub-query"), relay_message(b"q"))
        assert await receive_frame(sub) == b"q"


async def test_subscribe_with_authorization_bearer_header_is_accepted():
    headers = [(b"authorization", f"Bearer {make_token('sub-header')}".encode())]
    async with subscriber("sub-header", headers=headers) as sub:
        await get_channel_layer().group_send(group_name("sub-header"), relay_message(b"h"))
        assert await receive_frame(sub) == b"h"


async def test_subscribe_to_a_percent_encoded_unicode_id_is_accepted():
    async with subscriber("tâche-🚀") as sub:
        await get_channel_layer().group_send(group_name("tâche-🚀"), relay_message(b"u"))
        assert await receive_frame(sub) == b"u"


async def test_published_bytes_arrive_as_a_binary_frame(async_client):
    async with subscriber("sub-binary") as sub:
        response = await async_client.post(
            channel_path("sub-binary"), data=b"plain ascii", content_type="text/plain", headers=API_KEY_HEADERS
        )
        assert response.status_code == 204
        message = await sub.receive_output(timeout(5))
        assert message == {"type": "websocket.send", "bytes": b"plain ascii"}


async def test_an_empty_message_arrives_as_an_empty_binary_frame(async_client):
    async with subscriber("sub-empty") as sub:
        response = await async_client.post(
            channel_path("sub-empty"), data=b"", content_type="application/octet-stream", headers=API_KEY_HEADERS
        )
        assert response.status_code == 204
        message = await sub.receive_output(timeout(5))
        assert message == {"type": "websocket.send", "bytes": b""}


async def test_all_256_byte_values_arrive_unchanged(async_client):
    body = bytes(range(256)) + bytes(range(255, -1, -1))
    async with subscriber("sub-256") as sub:
        response = await async_client.post(
            channel_path("sub-256"), data=body, content_type="application/octet-stream", headers=API_KEY_HEADERS
        )
        assert response.status_code == 204
        assert await receive_frame(sub) == body


async def test_each_single_byte_value_arrives_as_its_own_frame():
    layer = get_channel_layer()
    async with subscriber("sub-each-byte") as sub:
        for value in range(256):
            await layer.group_send(group_name("sub-each-byte"), relay_message(bytes([value])))
        for value in range(256):
            assert await receive_frame(sub) == bytes([value])


async def test_a_512_kib_message_arrives_whole(async_client):
    body = (bytes(range(256)) * 2048)[: 512 * 1024]
    async with subscriber("sub-large") as sub:
        response = await async_client.post(
            channel_path("sub-large"), data=body, content_type="application/octet-stream", headers=API_KEY_HEADERS
        )
        assert response.status_code == 204
        assert await receive_frame(sub) == body


async def test_2000_quick_messages_arrive_in_order():
    layer = get_channel_layer()
    messages = [f"message {i}".encode() for i in range(2000)]
    async with subscriber("sub-order") as sub:
        for message in messages:
            await layer.group_send(group_name("sub-order"), relay_message(message))
        received = [await receive_frame(sub) for _ in messages]
        assert received == messages
        assert await sub.receive_nothing()


async def test_published_messages_arrive_in_publish_order(async_client):
    messages = [f"step {i}".encode() for i in range(50)]
    async with subscriber("sub-http-order") as sub:
        for message in messages:
            response = await async_client.post(
                channel_path("sub-http-order"), data=message, content_type="text/plain", headers=API_KEY_HEADERS
            )
            assert response.status_code == 204
        assert [await receive_frame(sub) for _ in messages] == messages


async def test_every_subscriber_of_a_channel_gets_every_message(async_client):
    messages = [f"fan-out {i}".encode() for i in range(20)]
    async with subscriber("sub-fan") as a, subscriber("sub-fan") as b, subscriber("sub-fan") as c:
        for message in messages:
            response = await async_client.post(
                channel_path("sub-fan"), data=message, content_type="text/plain", headers=API_KEY_HEADERS
            )
            assert response.status_code == 204
        for sub in (a, b, c):
            assert [await receive_frame(sub) for _ in messages] == messages


async def test_a_subscriber_that_left_gets_nothing_and_others_still_do():
    layer = get_channel_layer()
    async with subscriber("sub-leave") as stays:
        async with subscriber("sub-leave") as leaves:
            await layer.group_send(group_name("sub-leave"), relay_message(b"both"))
            assert await receive_frame(leaves) == b"both"
        await layer.group_send(group_name("sub-leave"), relay_message(b"one"))
        assert await receive_frame(stays) == b"both"
        assert await receive_frame(stays) == b"one"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "websocket.receive", "text": "hello"},
        {"type": "websocket.receive", "bytes": b"\x00\x01"},
        {"type": "websocket.receive", "bytes": b""},
    ],
    ids=["text", "bytes", "empty-bytes"],
)
async def test_a_data_frame_from_the_client_closes_with_4003(frame):
    received = sample("webchannel_websocket_messages_received_total")
    async with subscriber("sub-talks") as sub:
        await sub.send_input(frame)
        message = await sub.receive_output(timeout(5))
        assert message["type"] == "websocket.close"
        assert message["code"] == 4003
    assert sample("webchannel_websocket_messages_received_total") == received + 1


async def test_a_subscriber_that_does_not_read_is_closed_with_4008_while_a_reader_gets_everything_in_order():
    with override_settings(CHANNEL_LAYERS=in_memory_layers(max_backlog_bytes=4096)):
        layer = get_channel_layer()
        errors = sample("webchannel_message_send_errors_total")
        messages = [f"{i:04d}".encode() * 50 for i in range(60)]  # 200 bytes each, ~20 fit in 4096
        async with subscriber("sub-slow") as fast:
            slow = WebsocketCommunicator(application, with_token("sub-slow", make_token("sub-slow")))
            # A socket whose transport takes one frame and then blocks, like a peer that stopped reading.
            slow._output_queue = asyncio.Queue(maxsize=1)
            try:
                connected, _ = await slow.connect(timeout(5))
                assert connected
                for message in messages:
                    await layer.group_send(group_name("sub-slow"), relay_message(message))
                    assert await receive_frame(fast) == message
                got = []
                while True:
                    output = await slow.receive_output(timeout(5))
                    if output["type"] == "websocket.close":
                        break
                    got.append(output["bytes"])
                assert output["code"] == 4008
                assert got == messages[: len(got)]
                assert len(got) < len(messages)
            finally:
                await slow.disconnect(timeout=timeout(5))
            await layer.group_send(group_name("sub-slow"), relay_message(b"after"))
            assert await receive_frame(fast) == b"after"
        assert sample("webchannel_message_send_errors_total") > errors


async def test_subscribe_while_redis_is_unreachable_is_accepted_then_closed_with_4013(unreachable_redis_layer):
    communicator = WebsocketCommunicator(application, with_token("sub-down", make_token("sub-down")))
    try:
        async with asyncio.timeout(timeout(5)):
            connected, _ = await communicator.connect(timeout(5))
            assert connected
            message = await communicator.receive_output(timeout(5))
        assert message == {
            "type": "websocket.close",
            "code": 4013,
            "reason": "try again later",
            "webchannel.refusal": "layer_unavailable",
        }
    finally:
        await communicator.disconnect(timeout=timeout(5))


async def test_users_connected_gauge_follows_open_subscriber_sockets():
    before = sample("webchannel_users_connected")
    async with subscriber("sub-gauge"):
        assert sample("webchannel_users_connected") == before + 1
        async with subscriber("sub-gauge-2"):
            assert sample("webchannel_users_connected") == before + 2
        assert sample("webchannel_users_connected") == before + 1
    assert sample("webchannel_users_connected") == before


async def test_refused_subscribers_do_not_count_as_connected():
    before = sample("webchannel_users_connected")
    communicator = WebsocketCommunicator(application, channel_path("sub-refused-gauge"))
    try:
        connected, _ = await communicator.connect(timeout(5))
        assert not connected
        assert sample("webchannel_users_connected") == before
    finally:
        await communicator.disconnect(timeout=timeout(5))
    assert sample("webchannel_users_connected") == before
