"""Who is listening: ``GET /webchannel/v1/channels/{id}`` and ``Webchannel-Subscribers`` on publishes.

Counts cross processes through Redis: two ``manage.py serve`` processes on one real Redis, a
process killed with SIGKILL is dropped from the others' counts within the documented bound.
"""

from __future__ import annotations

import contextlib
import signal
import time
from functools import partial

import httpx
import pytest

from channels_api.presence import GHOST_BOUND_SECONDS
from tests.common import API_KEY, assert_problem
from tests.e2e.helpers import (
    CHANNELS,
    channel_url,
    create_channel,
    http_client,
    publish,
    recv_binary,
    subscribe,
)
from tests.harness import ServerProcess, timeout
from tests.waiting import eventually


async def info(client: httpx.AsyncClient, server: ServerProcess, channel_id: str, **headers: str) -> httpx.Response:
    return await client.get(channel_url(server.url, channel_id), headers=headers)


async def subscribers(client: httpx.AsyncClient, server: ServerProcess, channel_id: str) -> int:
    response = await info(client, server, channel_id, **{"x-api-key": API_KEY})
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["channelId"] == channel_id
    return int(document["subscribers"])


def full_and_subscribe_tokens(server: ServerProcess, channel_id: str) -> tuple[str, str]:
    response = httpx.post(
        f"{server.url}{CHANNELS}", headers={"x-api-key": API_KEY}, json={"channelId": channel_id}, timeout=timeout(10)
    )
    assert response.status_code == 200, response.text
    return response.json()["token"], response.json()["subscribeToken"]


async def test_info_counts_this_process_subscribers(shared_server: ServerProcess) -> None:
    channel_id = "info-local-ü"
    token, _ = full_and_subscribe_tokens(shared_server, channel_id)
    async with http_client() as client:
        assert await subscribers(client, shared_server, channel_id) == 0
        async with subscribe(shared_server.url, channel_id, token), subscribe(shared_server.url, channel_id, token):
            response = await info(client, shared_server, channel_id, authorization=f"Bearer {token}")
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/json"
            assert response.json() == {"channelId": channel_id, "subscribers": 2}
            published = await publish(client, shared_server.url, channel_id, b"x", token=token)
            assert published.status_code == 204
            assert published.headers["webchannel-subscribers"] == "2"
        await eventually(
            lambda: _zero(client, shared_server, channel_id), 10, "the count to drop when the subscribers leave"
        )
        published = await publish(client, shared_server.url, channel_id, b"x", api_key=API_KEY)
        assert published.headers["webchannel-subscribers"] == "0"


async def _zero(client: httpx.AsyncClient, server: ServerProcess, channel_id: str) -> bool:
    return await subscribers(client, server, channel_id) == 0


async def test_info_needs_the_full_token_or_an_api_key(shared_server: ServerProcess) -> None:
    token, subscribe_token = full_and_subscribe_tokens(shared_server, "info-auth")
    _, other_token = create_channel(shared_server.url, "info-auth-other")
    async with http_client() as client:
        assert_problem(await info(client, shared_server, "info-auth"), 401)
        assert_problem(await info(client, shared_server, "info-auth", **{"x-api-key": "wrong"}), 401)
        assert_problem(await info(client, shared_server, "info-auth", authorization="Bearer nonsense"), 401)
        assert_problem(await info(client, shared_server, "info-auth", authorization=f"Bearer {other_token}"), 403)
        assert_problem(await info(client, shared_server, "info-auth", authorization=f"Bearer {subscribe_token}"), 403)
        assert (await info(client, shared_server, "info-auth", authorization=f"Bearer {token}")).status_code == 200
        response = await client.put(channel_url(shared_server.url, "info-auth"), headers={"x-api-key": API_KEY})
        assert_problem(response, 405)
        assert set(response.headers["allow"].split(", ")) == {"GET", "POST", "DELETE"}


@pytest.mark.slow
async def test_counts_add_up_across_processes_and_a_killed_process_is_dropped(
    redis_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = redis_pair
    channel_id, token = create_channel(a.url, "info-across")
    async with contextlib.AsyncExitStack() as stack, http_client() as client:
        on_a = await stack.enter_async_context(subscribe(a.url, channel_id, token))
        for _ in range(2):
            await stack.enter_async_context(subscribe(b.url, channel_id, token))
        started = time.monotonic()
        for server in (a, b):
            await eventually(partial(_equals, client, server, channel_id, 3), 2, f"{server.url} to count 3")
        assert time.monotonic() - started < timeout(2)

        # The header reads the cached count: no Redis round trip per publish, converged by now.
        async def header_is_three() -> bool:
            response = await publish(client, b.url, channel_id, b"m", token=token)
            assert response.status_code == 204, response.text
            return response.headers["webchannel-subscribers"] == "3"

        await eventually(header_is_three, 2, "the publish header to say 3")
        assert await recv_binary(on_a) == b"m"

        b.signal(signal.SIGKILL)
        b.wait_exit(10)
        killed = time.monotonic()
        await eventually(lambda: _equals(client, a, channel_id, 1), GHOST_BOUND_SECONDS + 3, "B's subscribers to go")

        async def header_is_one() -> bool:
            response = await publish(client, a.url, channel_id, b"after", token=token)
            return response.headers["webchannel-subscribers"] == "1"

        await eventually(header_is_one, GHOST_BOUND_SECONDS + 3, "the publish header to drop B's subscribers")
        assert time.monotonic() - killed <= GHOST_BOUND_SECONDS + 1


async def _equals(client: httpx.AsyncClient, server: ServerProcess, channel_id: str, expected: int) -> bool:
    return await subscribers(client, server, channel_id) == expected
