"""Named keys against a real ``manage.py serve``: the tokens a key mints never do more than the
key (``scope`` claim), stay on the ids its ``channels`` prefixes allow, name the key in the access
log, and stop working once the key is removed from the configuration and the server restarted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.common import SECRET_KEY, assert_problem, token_claims
from tests.e2e.helpers import (
    CHANNELS,
    channel_url,
    http_client,
    non_empty_lines,
    publish,
    recv_binary,
    refused_status,
    subscribe,
    ws_url,
)
from tests.harness import API_KEY, ServerProcess, serving, timeout, wait_for

CREATOR_KEY = "creator-key-5ecr3t-0001"
PUBLISHER_KEY = "publisher-key-5ecr3t-01"
TENANT_KEY = "tenant-a-key-5ecr3t-001"
RETIRING_KEY = "retiring-key-5ecr3t-01"
KEYS = f"""
[[channel.keys]]
name = "creator"
key = "{CREATOR_KEY}"
scopes = ["create"]

[[channel.keys]]
name = "publisher"
key = "{PUBLISHER_KEY}"
scopes = ["create", "publish"]

[[channel.keys]]
name = "tenant-a"
key = "{TENANT_KEY}"
scopes = ["create", "publish", "info", "close"]
channels = ["tenant-a:", "shared."]
"""
RETIRING = f"""
[[channel.keys]]
name = "retiring"
key = "{RETIRING_KEY}"
scopes = ["create", "publish", "info", "close"]
"""
BASE = f"""
[server]
listen_address = "127.0.0.1:0"

[channel]
secret_key = "{SECRET_KEY}"
api_keys = ["{API_KEY}"]
"""
SECRETS = (CREATOR_KEY, PUBLISHER_KEY, TENANT_KEY, RETIRING_KEY, API_KEY, SECRET_KEY)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serving(tmp_path_factory.mktemp("key-tenancy"), BASE + KEYS) as server:
        yield server


def create(server: ServerProcess, key: str, channel_id: str | None = None) -> httpx.Response:
    body = {} if channel_id is None else {"channelId": channel_id}
    return httpx.post(f"{server.url}{CHANNELS}", headers={"x-api-key": key}, json=body, timeout=timeout(10))


def created(server: ServerProcess, key: str, channel_id: str | None = None) -> dict[str, str]:
    response = create(server, key, channel_id)
    assert response.status_code == 200, response.text
    document = response.json()
    assert isinstance(document, dict)
    return document


def call(server: ServerProcess, method: str, channel_id: str, headers: dict[str, str]) -> httpx.Response:
    """Publish (POST), info (GET) or close (DELETE) ``channel_id`` with ``headers``."""
    content = b"m" if method == "POST" else None
    url = channel_url(server.url, channel_id)
    return httpx.request(method, url, headers=headers, content=content, timeout=timeout(10))


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# --- tokens never exceed the key that minted them -----------------------------------------------


async def test_a_create_only_key_cannot_take_over_a_channel_it_names(keyed_server):
    """The abuse: a key that may only create asks for the id of someone else's channel. Its token
    must not publish into that channel, read its subscribers or close it; it may subscribe."""
    victim = created(keyed_server, API_KEY, "victim")
    minted = created(keyed_server, CREATOR_KEY, "victim")
    assert minted["channelId"] == "victim"
    claims = token_claims(minted["token"])
    assert (claims["scope"], claims["key"]) == ("subscribe", "creator")
    assert token_claims(minted["subscribeToken"]) == claims
    async with subscribe(keyed_server.url, "victim", victim["subscribeToken"]) as owner:
        for method in ("POST", "GET", "DELETE"):
            document = assert_problem(call(keyed_server, method, "victim", bearer(minted["token"])), 403, method)
            assert document["detail"] == "this token may only subscribe"
        async with subscribe(keyed_server.url, "victim", minted["token"]) as eavesdropper:
            async with http_client() as client:
                response = await publish(client, keyed_server.url, "victim", b"for the owner", token=victim["token"])
            assert response.status_code == 204, response.text
            assert await recv_binary(owner) == b"for the owner"  # still subscribed: the DELETE did nothing
            assert await recv_binary(eavesdropper) == b"for the owner"


async def test_a_publishing_key_mints_a_token_that_publishes_but_cannot_close_or_read_info(keyed_server):
    minted = created(keyed_server, PUBLISHER_KEY)
    channel_id, token = minted["channelId"], minted["token"]
    claims = token_claims(token)
    assert (claims["scope"], claims["key"]) == ("subscribe publish", "publisher")
    assert token_claims(minted["subscribeToken"]) == {**claims, "scope": "subscribe"}
    async with subscribe(keyed_server.url, channel_id, minted["subscribeToken"]) as ws:
        async with http_client() as client:
            response = await publish(client, keyed_server.url, channel_id, b"\x00progress", token=token)
        assert response.status_code == 204, response.text
        assert await recv_binary(ws) == b"\x00progress"
        for method in ("GET", "DELETE"):
            document = assert_problem(call(keyed_server, method, channel_id, bearer(token)), 403, method)
            assert document["detail"] == "this token may only subscribe and publish"
        document = assert_problem(call(keyed_server, "POST", channel_id, bearer(minted["subscribeToken"])), 403)
        assert document["detail"] == "this token may only subscribe"


def test_keys_of_the_plain_list_keep_minting_full_tokens(keyed_server):
    minted = created(keyed_server, API_KEY)
    assert "scope" not in token_claims(minted["token"])
    assert "key" not in token_claims(minted["token"])
    for method, status in (("POST", 204), ("GET", 200), ("DELETE", 204)):
        assert call(keyed_server, method, minted["channelId"], bearer(minted["token"])).status_code == status


# --- channel prefixes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
def test_a_key_with_prefixes_is_refused_on_other_ids_on_every_route(keyed_server, method):
    headers = {"x-api-key": TENANT_KEY}
    document = assert_problem(call(keyed_server, method, "tenant-b:orders", headers), 403, method)
    assert document["detail"] == "this API key may not use channel 'tenant-b:orders'"
    allowed = {"POST": 204, "GET": 200, "DELETE": 204}[method]
    assert call(keyed_server, method, "tenant-a:orders", headers).status_code == allowed
    assert call(keyed_server, method, "shared.news", headers).status_code == allowed


def test_a_key_with_prefixes_may_not_create_another_id(keyed_server):
    for channel_id in ("tenant-b:orders", "tenant-a", "x-tenant-a:1", "victim"):
        document = assert_problem(create(keyed_server, TENANT_KEY, channel_id), 403, channel_id)
        assert document["detail"] == f"this API key may not use channel {channel_id!r}"
    assert created(keyed_server, TENANT_KEY, "tenant-a:orders")["channelId"] == "tenant-a:orders"
    assert created(keyed_server, TENANT_KEY, "shared.news")["channelId"] == "shared.news"


def test_a_long_refused_id_is_not_echoed_whole(keyed_server):
    channel_id = "tenant-b:" + "x" * 119
    document = assert_problem(create(keyed_server, TENANT_KEY, channel_id), 403)
    assert channel_id not in document["detail"]
    assert document["detail"].startswith("this API key may not use channel 'tenant-b:xxx")
    assert "(128 characters)" in document["detail"]
    assert len(document["detail"]) < 140


def test_a_generated_id_starts_with_the_first_prefix(keyed_server):
    ids = {created(keyed_server, TENANT_KEY)["channelId"] for _ in range(3)}
    assert len(ids) == 3
    for channel_id in ids:
        assert channel_id.startswith("tenant-a:"), channel_id
        assert len(channel_id) == len("tenant-a:") + 22, channel_id


async def test_the_tokens_of_a_prefixed_key_stay_on_its_ids(keyed_server):
    minted = created(keyed_server, TENANT_KEY)
    channel_id, token = minted["channelId"], minted["token"]
    assert token_claims(token)["cid"] == channel_id
    assert token_claims(token)["scope"] == "subscribe publish info close"
    for method, status in (("POST", 204), ("GET", 200)):
        assert call(keyed_server, method, channel_id, bearer(token)).status_code == status
    document = assert_problem(call(keyed_server, "POST", "tenant-b:orders", bearer(token)), 403)
    assert document["detail"] == "token is for another channel"
    assert await refused_status(ws_url(keyed_server.url, "tenant-b:orders", token)) == 403


# --- the key's name, never the key, in the access log ---------------------------------------


def access_lines(server: ServerProcess, method: str, channel_id: str) -> list[str]:
    path = channel_url("", channel_id)
    return [line for line in non_empty_lines(server.output()) if f'"{method} {path}"' in line]


def test_a_request_with_a_named_keys_token_logs_the_key_name(keyed_server):
    minted = created(keyed_server, PUBLISHER_KEY, "logged-by-token")
    full = created(keyed_server, API_KEY, "logged-by-token")
    assert call(keyed_server, "POST", "logged-by-token", bearer(minted["token"])).status_code == 204
    assert call(keyed_server, "GET", "logged-by-token", bearer(minted["token"])).status_code == 403
    assert call(keyed_server, "POST", "logged-by-token", {"x-api-key": PUBLISHER_KEY}).status_code == 204
    assert call(keyed_server, "POST", "logged-by-token", bearer(full["token"])).status_code == 204

    def lines() -> list[str] | None:
        found = access_lines(keyed_server, "POST", "logged-by-token") + access_lines(
            keyed_server, "GET", "logged-by-token"
        )
        return found if len(found) == 4 else None

    found = wait_for(lines, 10, "four access-log lines")
    expected = [("204", " key=publisher"), ("204", " key=publisher"), ("204", ""), ("403", " key=publisher")]
    for line, (status, suffix) in zip(found, expected, strict=True):
        assert f'" {status} ' in line, line
        assert line.endswith(suffix) if suffix else "key=" not in line, line
    output = keyed_server.output()
    for secret in (*SECRETS, minted["token"], full["token"]):
        assert secret not in output


def test_an_event_stream_of_a_named_keys_token_logs_the_key_name(keyed_server):
    minted = created(keyed_server, CREATOR_KEY, "logged-stream")
    url = channel_url(keyed_server.url, "logged-stream") + "/events"
    headers = {"accept": "text/event-stream", **bearer(minted["subscribeToken"])}
    with httpx.stream("GET", url, headers=headers, timeout=timeout(10)) as stream:
        assert stream.status_code == 200
        # The channel's close ends the stream, and with it the request and its access-log line.
        assert call(keyed_server, "DELETE", "logged-stream", {"x-api-key": API_KEY}).status_code == 204
        for _ in stream.iter_bytes():
            pass
    path = channel_url("", "logged-stream") + "/events"

    def stream_line() -> str | None:
        lines = [line for line in non_empty_lines(keyed_server.output()) if f'"GET {path}"' in line]
        return lines[0] if lines else None

    line = wait_for(stream_line, 10, "the event stream's access-log line")
    assert line.endswith(" key=creator"), line
    assert minted["subscribeToken"] not in keyed_server.output()


# --- removing a key retires its tokens ------------------------------------------------------------


async def test_a_token_whose_key_was_removed_is_refused_after_a_restart(tmp_path: Path):
    with serving(tmp_path, BASE + KEYS + RETIRING, name="before") as server:
        retired = created(server, RETIRING_KEY, "retired-ch")
        kept = created(server, PUBLISHER_KEY, "kept-ch")
        assert call(server, "POST", "retired-ch", bearer(retired["token"])).status_code == 204
    with serving(tmp_path, BASE + KEYS, name="after") as server:
        for method in ("POST", "GET", "DELETE"):
            document = assert_problem(call(server, method, "retired-ch", bearer(retired["token"])), 401, method)
            assert document["detail"] == "the API key that issued this token is no longer configured"
        for token in (retired["token"], retired["subscribeToken"]):
            assert await refused_status(ws_url(server.url, "retired-ch", token)) == 403

        def refusals() -> list[str] | None:
            lines = [line for line in non_empty_lines(server.output()) if " refused " in line]
            return lines if len(lines) == 2 else None

        for line in wait_for(refusals, 10, "the two refused subscribes' lines"):
            assert line.endswith(" refused invalid_token"), line
        # The tokens of a key still configured keep working across the restart.
        assert call(server, "POST", "kept-ch", bearer(kept["token"])).status_code == 204
        async with subscribe(server.url, "kept-ch", kept["subscribeToken"]):
            pass
