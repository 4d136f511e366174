"""Tokens end: a subscription lasts no longer than the token that opened it, and a publisher's
token no longer than ``channel.ttl``; the Python client fetches fresh tokens.

Against a real ``manage.py serve`` whose tokens live two seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.common import token_claims
from tests.e2e.helpers import (
    closed_with,
    http_client,
    metric_value,
    metrics_text,
    publish,
    recv_binary,
    subscribe,
)
from tests.e2e.subscribe.test_sse import event_stream, events_url, stream_client
from tests.harness import API_KEY, ServerProcess, base_config, serving, wait_for
from tests.waiting import eventually
from webchannel_client import AsyncClient, Client, WebchannelError

pytestmark = pytest.mark.slow  # each test waits for a token to expire

TTL = 2


@pytest.fixture(scope="module")
def short_tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose tokens expire ``TTL`` seconds after they are issued."""
    with serving(tmp_path_factory.mktemp("expiry"), base_config(channel={"ttl": TTL})) as server:
        yield server


async def test_a_websocket_is_closed_with_4005_when_its_token_expires(short_tokens: ServerProcess):
    with Client(short_tokens.url, api_key=API_KEY) as client:
        channel = client.create_channel()
    expires_at = token_claims(channel.token)["exp"]
    async with subscribe(short_tokens.url, channel.channel_id, channel.subscribe_token or "") as ws:
        async with http_client() as http:
            assert (
                await publish(http, short_tokens.url, channel.channel_id, b"before", token=channel.token)
            ).status_code == 204
        assert await recv_binary(ws) == b"before"
        assert await closed_with(ws, TTL + 5) == 4005
        assert ws.close_reason == "token expired"
    assert time.time() >= expires_at - 0.05, "closed before the token's exp"
    closed = metric_value(metrics_text(short_tokens.url), "webchannel_websocket_closed_total", {"code": "4005"})
    assert closed is not None
    assert closed >= 1


async def test_an_event_stream_ends_with_an_expired_event_when_its_token_expires(short_tokens: ServerProcess):
    with Client(short_tokens.url, api_key=API_KEY) as client:
        channel = client.create_channel()
    async with (
        stream_client() as http,
        event_stream(http, events_url(short_tokens.url, channel.channel_id, channel.token)) as stream,
    ):
        assert await stream.next_event(TTL + 5) == ("expired", "token expired")
        await stream.until_end(5)


async def test_the_python_client_fetches_a_fresh_token_and_keeps_receiving(short_tokens: ServerProcess):
    async with AsyncClient(short_tokens.url, api_key=API_KEY) as client:
        channel = await client.create_channel()
        fetched: list[str] = []

        async def fresh_token() -> str:
            renewed = await client.renew(channel)
            fetched.append(renewed.subscribe_token or "")
            return fetched[-1]

        received: list[bytes] = []

        async def read(messages: AsyncIterator[bytes]) -> None:
            async for message in messages:
                received.append(message)

        async with client.subscribe(
            channel.channel_id, channel.subscribe_token or "", get_token=fresh_token
        ) as messages:
            reader = asyncio.create_task(read(messages))
            try:
                await client.publish(channel.channel_id, b"first", token=channel.token)
                await eventually(lambda: received, 10, "the first message")
                await eventually(lambda: fetched, TTL + 10, "the subscription to ask for a fresh token")
                # Messages published while it reconnected are lost (no resume here); one published
                # once it is back arrives on the same iterator, without an error.
                n = 0

                async def arrived_after_renewal() -> bool:
                    nonlocal n
                    n += 1
                    await client.publish(channel.channel_id, f"after renewal {n}".encode())
                    return any(m.startswith(b"after renewal") for m in received)

                await eventually(arrived_after_renewal, 10, "a message after the renewal")
            finally:
                reader.cancel()
        assert received[0] == b"first"
        assert not reader.done() or reader.cancelled(), "the iteration ended or raised at the token's expiry"
        assert token_claims(fetched[0])["exp"] > token_claims(channel.token)["exp"]


async def test_a_publisher_token_older_than_the_ttl_is_refused_and_renew_gives_a_fresh_one(
    short_tokens: ServerProcess,
):
    """A worker holding the channel's token past channel.ttl gets 401; it publishes with a renewed
    token (or with an API key that may publish)."""
    with Client(short_tokens.url, api_key=API_KEY) as client:
        channel = client.create_channel()
        assert client.publish(channel.channel_id, b"in time", token=channel.token) is not None

        def refused() -> WebchannelError | None:
            try:
                client.publish(channel.channel_id, b"too late?", token=channel.token)
            except WebchannelError as exc:
                return exc
            return None

        # Past its exp and the verification's few seconds of leeway, the token stops publishing.
        error = wait_for(refused, TTL + 10, "the publisher's token to expire", interval=0.5)
        assert error.status == 401
        assert "expired" in (error.detail or "")
        renewed = client.renew(channel)
        assert renewed.channel_id == channel.channel_id
        assert client.publish(channel.channel_id, b"renewed", token=renewed.token) == 0
