"""Closing a channel: ``DELETE /webchannel/v1/channels/{id}`` delivers its body as the last message,
then closes every subscriber, in every process, with 4000; nothing is stored, so a later
subscriber is not affected."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.common import API_KEY, assert_problem
from tests.e2e.helpers import (
    CHANNELS,
    channel_url,
    closed_with,
    create_channel,
    http_client,
    metric_value,
    metrics_text,
    publish,
    recv_binary,
    subscribe,
    ws_url,
)
from tests.harness import ServerProcess, timeout
from tests.waiting import eventually

CHANNEL_CLOSED = 4000


async def close(
    client: httpx.AsyncClient, server: ServerProcess, channel_id: str, body: bytes = b"", **headers: str
) -> httpx.Response:
    return await client.request("DELETE", channel_url(server.url, channel_id), content=body, headers=headers)


async def count_is(client: httpx.AsyncClient, server: ServerProcess, channel_id: str, expected: int) -> bool:
    response = await client.get(channel_url(server.url, channel_id), headers={"x-api-key": API_KEY})
    assert response.status_code == 200, response.text
    return bool(response.json()["subscribers"] == expected)


def closes_counted(server: ServerProcess) -> float:
    text = metrics_text(server.url)
    return metric_value(text, "webchannel_websocket_closed_total", {"code": str(CHANNEL_CLOSED)}) or 0.0


async def test_the_body_arrives_last_then_every_subscriber_closes_with_4000(shared_server: ServerProcess) -> None:
    channel_id, token = create_channel(shared_server.url, "close-local")
    before = closes_counted(shared_server)
    async with (
        http_client() as client,
        subscribe(shared_server.url, channel_id, token) as binary,
        connect(ws_url(shared_server.url, channel_id, token) + "&frames=text", open_timeout=timeout(10)) as text,
    ):
        assert (await publish(client, shared_server.url, channel_id, b"first", token=token)).status_code == 204
        response = await close(client, shared_server, channel_id, "bye ✓".encode(), authorization=f"Bearer {token}")
        assert response.status_code == 204, response.text
        assert response.headers["webchannel-subscribers"] == "2"
        assert response.content == b""
        assert [await recv_binary(binary), await recv_binary(binary)] == [b"first", "bye ✓".encode()]
        assert await closed_with(binary) == CHANNEL_CLOSED
        async with asyncio.timeout(timeout(10)):
            assert [await text.recv(), await text.recv()] == ["first", "bye ✓"]
        assert await closed_with(text) == CHANNEL_CLOSED
        await eventually(lambda: count_is(client, shared_server, channel_id, 0), 10, "the closed subscribers to go")
    assert closes_counted(shared_server) == before + 2


async def test_without_a_body_subscribers_just_close_and_later_ones_are_not_affected(
    shared_server: ServerProcess,
) -> None:
    channel_id, token = create_channel(shared_server.url, "close-empty")
    async with http_client() as client:
        async with subscribe(shared_server.url, channel_id, token) as ws:
            response = await close(client, shared_server, channel_id, b"", **{"x-api-key": API_KEY})
            assert response.status_code == 204, response.text
            assert response.headers["webchannel-subscribers"] == "1"
            assert await closed_with(ws) == CHANNEL_CLOSED  # and no data frame came first
        # No state is kept: the channel works as before for a subscriber that comes afterwards.
        async with subscribe(shared_server.url, channel_id, token) as later:
            assert (await publish(client, shared_server.url, channel_id, b"again", token=token)).status_code == 204
            assert await recv_binary(later) == b"again"
        response = await close(client, shared_server, channel_id, b"", **{"x-api-key": API_KEY})
        assert response.headers["webchannel-subscribers"] == "0"


async def test_closing_needs_the_full_token_or_an_api_key_and_the_body_is_bounded(
    shared_server: ServerProcess,
) -> None:
    response = httpx.post(
        f"{shared_server.url}{CHANNELS}", headers={"x-api-key": API_KEY}, json={"channelId": "close-auth"}
    )
    token, subscribe_token = response.json()["token"], response.json()["subscribeToken"]
    _, other_token = create_channel(shared_server.url, "close-auth-other")
    async with http_client() as client, subscribe(shared_server.url, "close-auth", token) as ws:
        assert_problem(await close(client, shared_server, "close-auth"), 401)
        assert_problem(await close(client, shared_server, "close-auth", b"", **{"x-api-key": "wrong"}), 401)
        assert_problem(await close(client, shared_server, "close-auth", authorization=f"Bearer {other_token}"), 403)
        assert_problem(await close(client, shared_server, "close-auth", authorization=f"Bearer {subscribe_token}"), 403)
        too_large = b"x" * (524288 + 1)  # channel.max_message_size's default, plus one
        assert_problem(await close(client, shared_server, "close-auth", too_large, **{"x-api-key": API_KEY}), 413)
        # Still open: none of the refused closes reached it.
        assert (await publish(client, shared_server.url, "close-auth", b"alive", token=token)).status_code == 204
        assert await recv_binary(ws) == b"alive"
        largest = b"y" * 524288
        assert (await close(client, shared_server, "close-auth", largest, **{"x-api-key": API_KEY})).status_code == 204
        assert await recv_binary(ws) == largest
        assert await closed_with(ws) == CHANNEL_CLOSED


@pytest.mark.slow
async def test_closing_through_one_process_closes_subscribers_of_every_process(
    redis_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = redis_pair
    channel_id, token = create_channel(a.url, "close-across")
    async with contextlib.AsyncExitStack() as stack, http_client() as client:
        sockets = [await stack.enter_async_context(subscribe(server.url, channel_id, token)) for server in (a, b, b)]
        await eventually(lambda: count_is(client, a, channel_id, 3), 5, "A to count every subscriber")
        warmups = 0

        async def header_says_three() -> bool:  # A's cached count has caught up too
            nonlocal warmups
            warmups += 1
            response = await publish(client, a.url, channel_id, b"warm-up", token=token)
            return response.headers["webchannel-subscribers"] == "3"

        await eventually(header_says_three, 5, "A's publish header to say 3")
        response = await close(client, a, channel_id, b"the end", authorization=f"Bearer {token}")
        assert response.status_code == 204, response.text
        assert response.headers["webchannel-subscribers"] == "3"
        for ws in sockets:
            assert [await recv_binary(ws) for _ in range(warmups)] == [b"warm-up"] * warmups
            assert await recv_binary(ws) == b"the end"
            assert await closed_with(ws) == CHANNEL_CLOSED
        for server in (a, b):
            await eventually(partial(count_is, client, server, channel_id, 0), 10, f"{server.url} to count 0")
