"""``POST /webchannel/v1/channels/{id}?wait=S``: wait up to S seconds for a subscriber anywhere,
then publish (the task that finished before the browser connected)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.common import API_KEY, assert_problem
from tests.e2e.helpers import channel_url, create_channel, http_client, recv_binary, subscribe
from tests.harness import ServerProcess, timeout


async def publish_waiting(
    client: httpx.AsyncClient, server: ServerProcess, channel_id: str, wait: str, body: bytes = b"result"
) -> httpx.Response:
    return await client.post(
        channel_url(server.url, channel_id) + f"?wait={wait}", content=body, headers={"x-api-key": API_KEY}
    )


@pytest.mark.parametrize("wait", ["0", "0.0", "-1", "30.5", "31", "abc", "", "nan", "inf", "1e1", "1_0", "0x1", " 1"])
async def test_a_wait_that_is_not_a_number_of_seconds_up_to_30_is_refused(
    shared_server: ServerProcess, wait: str
) -> None:
    channel_id, token = create_channel(shared_server.url, "wait-bad")
    async with http_client() as client, subscribe(shared_server.url, channel_id, token) as ws:
        response = await publish_waiting(client, shared_server, channel_id, wait, b"refused")
        problem = assert_problem(response, 400)
        assert "wait" in problem["detail"]
        response = await client.post(
            channel_url(shared_server.url, channel_id) + "?wait=1&wait=2", headers={"x-api-key": API_KEY}
        )
        assert_problem(response, 400)
        # Nothing was relayed: the next message is the first the subscriber sees.
        assert (await publish_waiting(client, shared_server, channel_id, "30", b"ok")).status_code == 204
        assert await recv_binary(ws) == b"ok"


async def test_with_a_subscriber_already_there_the_publish_does_not_wait(shared_server: ServerProcess) -> None:
    channel_id, token = create_channel(shared_server.url, "wait-present")
    async with http_client() as client, subscribe(shared_server.url, channel_id, token) as ws:
        started = time.monotonic()
        response = await publish_waiting(client, shared_server, channel_id, "30")
        assert response.status_code == 204, response.text
        assert time.monotonic() - started < timeout(2)
        assert response.headers["webchannel-subscribers"] == "1"
        assert await recv_binary(ws) == b"result"


@pytest.mark.slow
async def test_without_a_subscriber_the_publish_answers_after_the_wait_with_zero(shared_server: ServerProcess) -> None:
    channel_id, _ = create_channel(shared_server.url, "wait-nobody")
    async with http_client() as client:
        started = time.monotonic()
        response = await publish_waiting(client, shared_server, channel_id, "1.5")
        elapsed = time.monotonic() - started
        assert response.status_code == 204, response.text
        assert response.headers["webchannel-subscribers"] == "0"
        assert 1.5 <= elapsed < 1.5 + timeout(1.5)


@pytest.mark.slow
async def test_a_subscriber_arriving_on_another_process_gets_the_message(
    redis_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = redis_pair
    channel_id, token = create_channel(a.url, "wait-across")
    async with http_client() as client:
        started = time.monotonic()
        waiting = asyncio.create_task(publish_waiting(client, a, channel_id, "10", b"done"))
        await asyncio.sleep(1.0)  # the scenario: the browser connects a second after the task finished
        assert not waiting.done(), "the publish did not wait for a subscriber"
        async with subscribe(b.url, channel_id, token) as late:
            response = await asyncio.wait_for(waiting, timeout(10))
            assert response.status_code == 204, response.text
            assert response.headers["webchannel-subscribers"] == "1"
            assert time.monotonic() - started < 1.0 + timeout(2)
            assert await recv_binary(late) == b"done"

        # Nobody anywhere: answered after the wait, N = 0.
        started = time.monotonic()
        response = await publish_waiting(client, b, "wait-across-nobody", "1")
        assert response.status_code == 204, response.text
        assert response.headers["webchannel-subscribers"] == "0"
        assert 1.0 <= time.monotonic() - started < 1.0 + timeout(1.5)
