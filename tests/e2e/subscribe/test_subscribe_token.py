"""``subscribeToken``: a token a browser can hold that subscribes but cannot publish."""

from __future__ import annotations

import httpx

from tests.common import SECRET_KEY, assert_problem, make_token, token_claims
from tests.e2e.helpers import (
    CHANNELS,
    channel_url,
    http_client,
    publish,
    recv_binary,
    refused_status,
    subscribe,
    ws_url,
)
from tests.harness import API_KEY, timeout


def create(base_url: str) -> dict[str, str]:
    response = httpx.post(f"{base_url}{CHANNELS}", headers={"x-api-key": API_KEY}, timeout=timeout(10))
    assert response.status_code == 200, response.text
    document = response.json()
    assert isinstance(document, dict)
    return document


def test_create_answers_a_subscribe_token_with_the_same_channel_and_times(shared_server):
    created = create(shared_server.url)
    full, narrow = token_claims(created["token"]), token_claims(created["subscribeToken"])
    assert "scope" not in full
    assert narrow == {**full, "scope": "subscribe"}
    assert narrow["cid"] == created["channelId"]


async def test_it_subscribes_by_query_and_header_and_receives_what_the_full_token_publishes(shared_server):
    created = create(shared_server.url)
    channel_id, narrow = created["channelId"], created["subscribeToken"]
    async with (
        subscribe(shared_server.url, channel_id, narrow) as by_query,
        subscribe(shared_server.url, channel_id, narrow, header=True) as by_header,
    ):
        async with http_client() as client:
            response = await publish(client, shared_server.url, channel_id, b"\xffdone", token=created["token"])
        assert response.status_code == 204, response.text
        assert await recv_binary(by_query) == b"\xffdone"
        assert await recv_binary(by_header) == b"\xffdone"


async def test_publishing_with_it_is_403_problem_json(shared_server):
    created = create(shared_server.url)
    async with http_client() as client:
        response = await publish(client, shared_server.url, created["channelId"], b"x", token=created["subscribeToken"])
    document = assert_problem(response, 403)
    assert document["detail"] == "this token may only subscribe"


async def test_reading_info_or_closing_with_it_is_403_and_the_full_token_may(shared_server):
    created = create(shared_server.url)
    url = channel_url(shared_server.url, created["channelId"])
    async with http_client() as client:
        for method in ("GET", "DELETE"):
            response = await client.request(
                method, url, headers={"authorization": f"Bearer {created['subscribeToken']}"}
            )
            document = assert_problem(response, 403, method)
            assert document["detail"] == "this token may only subscribe"
        info = await client.get(url, headers={"authorization": f"Bearer {created['token']}"})
        assert info.status_code == 200, info.text
        closed = await client.delete(url, headers={"authorization": f"Bearer {created['token']}"})
        assert closed.status_code == 204, closed.text


async def test_a_forged_scope_is_refused_everywhere(shared_server):
    """A correctly signed token with a scope this version does not know grants nothing (401/403)."""
    created = create(shared_server.url)
    channel_id = created["channelId"]
    forged = make_token(channel_id, secret=SECRET_KEY, scope="admin")
    async with http_client() as client:
        response = await publish(client, shared_server.url, channel_id, b"x", token=forged)
    document = assert_problem(response, 401)
    assert "unknown scope" in document["detail"]
    assert await refused_status(ws_url(shared_server.url, channel_id, forged)) == 403


async def test_a_subscribe_token_for_another_channel_is_refused(shared_server):
    created, other = create(shared_server.url), create(shared_server.url)
    assert await refused_status(ws_url(shared_server.url, created["channelId"], other["subscribeToken"])) == 403
    async with http_client() as client:
        response = await client.post(
            channel_url(shared_server.url, created["channelId"]),
            content=b"x",
            headers={"authorization": f"Bearer {other['subscribeToken']}"},
        )
    assert_problem(response, 403)


async def test_a_token_without_scope_keeps_publishing(shared_server):
    created = create(shared_server.url)
    async with http_client() as client:
        response = await publish(client, shared_server.url, created["channelId"], b"x", token=created["token"])
    assert response.status_code == 204, response.text
