"""Every 4xx the API documents, over real HTTP, and refused WebSocket handshakes.

Each error is RFC 7807 ``application/problem+json`` with ``title`` and ``status``; a refused
subscribe is an HTTP 401/403 answer to the handshake, never an upgrade; a refused publish
relays nothing.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.common import alg_none_token, assert_problem, expired_token, make_token
from tests.e2e.helpers import (
    CHANNELS,
    channel_url,
    create_channel,
    http_client,
    publish,
    recv_binary,
    refused_status,
    subscribe,
    ws_url,
)
from tests.harness import API_KEY, ServerProcess, base_config, serving, timeout

SMALL_MAX = 1024
DEFAULT_MAX = 524288
INVALID_IDS = [
    pytest.param("", id="empty"),
    pytest.param("x" * 129, id="129-chars"),
    pytest.param("a/b", id="slash"),
    pytest.param("a b", id="space"),
    pytest.param("tab\there", id="tab"),
    pytest.param("ctl\x01", id="control-char"),
    pytest.param("nl\n", id="newline"),
]


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose ``channel.max_message_size`` is 1 KiB."""
    config = base_config(channel={"max_message_size": SMALL_MAX})
    with serving(tmp_path_factory.mktemp("small-max"), config) as server:
        yield server


def post(server: ServerProcess, path: str, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", timeout=timeout(10), **kwargs)  # type: ignore[arg-type]


# --- create ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing-key"),
        pytest.param({"x-api-key": "wrong-key"}, id="wrong-key"),
        pytest.param({"x-api-key": API_KEY + "x"}, id="key-with-suffix"),
        pytest.param({"x-api-key": API_KEY[:-1]}, id="key-prefix"),
        pytest.param({"x-api-key": ""}, id="empty-key"),
        pytest.param({"authorization": f"Bearer {API_KEY}"}, id="key-as-bearer"),
    ],
)
def test_create_without_a_valid_api_key_is_401(shared_server: ServerProcess, headers: dict[str, str]) -> None:
    assert_problem(post(shared_server, CHANNELS, headers=headers, json={}), 401)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="bad-json"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'["channelId"]', id="array-of-string"),
        pytest.param(b'"channelId"', id="string"),
        pytest.param(b"42", id="number"),
        pytest.param(b"null", id="null"),
        pytest.param(b'{"channelId": 42}', id="channelId-number"),
        pytest.param(b'{"channelId": null}', id="channelId-null"),
        pytest.param(b'{"channelId": ["a"]}', id="channelId-array"),
        pytest.param(b'{"channelId": {"a": 1}}', id="channelId-object"),
        pytest.param(b'{"channelId": "ok", "extra": 1}', id="unknown-field"),
        pytest.param(b'{"ttl": 60}', id="only-unknown-field"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[" * 5000 + b"]" * 5000, id="deeply-nested"),
    ],
)
def test_create_with_a_body_that_is_not_an_object_with_a_string_channel_id_is_400(
    shared_server: ServerProcess, body: bytes
) -> None:
    response = post(
        shared_server, CHANNELS, headers={"x-api-key": API_KEY, "content-type": "application/json"}, content=body
    )
    assert_problem(response, 400)


@pytest.mark.parametrize("channel_id", INVALID_IDS)
def test_create_with_an_invalid_channel_id_is_400(shared_server: ServerProcess, channel_id: str) -> None:
    response = post(shared_server, CHANNELS, headers={"x-api-key": API_KEY}, json={"channelId": channel_id})
    assert_problem(response, 400)


def test_create_accepts_the_longest_valid_id(shared_server: ServerProcess) -> None:
    """The 128-character boundary is allowed (129 is refused above)."""
    response = post(shared_server, CHANNELS, headers={"x-api-key": API_KEY}, json={"channelId": "y" * 128})
    assert response.status_code == 200, response.text
    assert response.json()["channelId"] == "y" * 128


def test_create_body_over_16_kib_is_413(shared_server: ServerProcess) -> None:
    padding = " " * (16 * 1024 - 1)  # valid JSON with whitespace: only the size is wrong
    body = ("{}" + padding).encode()
    assert len(body) == 16 * 1024 + 1
    response = post(shared_server, CHANNELS, headers={"x-api-key": API_KEY}, content=body)
    assert_problem(response, 413)


def test_create_chunked_body_over_16_kib_is_413(shared_server: ServerProcess) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: httpx sends Transfer-Encoding: chunked
        yield b"{}"
        for _ in range(17):
            yield b" " * 1024

    response = post(shared_server, CHANNELS, headers={"x-api-key": API_KEY}, content=chunks())
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413)


def test_create_body_of_exactly_16_kib_is_accepted(shared_server: ServerProcess) -> None:
    body = ("{}" + " " * (16 * 1024 - 2)).encode()
    response = post(shared_server, CHANNELS, headers={"x-api-key": API_KEY}, content=body)
    assert response.status_code == 200, response.text


# --- publish: authentication -----------------------------------------------------------------


def _bad_credentials(channel_id: str) -> dict[str, dict[str, str]]:
    return {
        "none": {},
        "garbage-token": {"authorization": "Bearer not.a.token"},
        "empty-bearer": {"authorization": "Bearer"},
        "expired-token": {"authorization": f"Bearer {expired_token(channel_id)}"},
        "alg-none-token": {"authorization": f"Bearer {alg_none_token(channel_id)}"},
        "wrong-secret": {"authorization": f"Bearer {make_token(channel_id, secret='another-secret-' + 'x' * 32)}"},
        "basic-scheme": {"authorization": f"Basic {make_token(channel_id)}"},
        "wrong-api-key": {"x-api-key": "wrong-key"},
        "api-key-as-bearer": {"authorization": f"Bearer {API_KEY}"},
    }


@pytest.mark.parametrize("case", list(_bad_credentials("x")))
async def test_publish_without_valid_credentials_is_401_and_relays_nothing(
    shared_server: ServerProcess, case: str
) -> None:
    channel_id, token = create_channel(shared_server.url)
    headers = _bad_credentials(channel_id)[case]
    async with subscribe(shared_server.url, channel_id, token) as ws, http_client() as client:
        response = await client.post(channel_url(shared_server.url, channel_id), content=b"forged", headers=headers)
        assert_problem(response, 401)
        await assert_only_next_message_arrives(client, shared_server, ws, channel_id, token)


async def test_publish_with_a_valid_token_for_another_channel_is_403_and_relays_nothing(
    shared_server: ServerProcess,
) -> None:
    channel_id, token = create_channel(shared_server.url)
    _, other_token = create_channel(shared_server.url)
    async with subscribe(shared_server.url, channel_id, token) as ws, http_client() as client:
        response = await publish(client, shared_server.url, channel_id, b"wrong channel", token=other_token)
        assert_problem(response, 403)
        await assert_only_next_message_arrives(client, shared_server, ws, channel_id, token)


async def assert_only_next_message_arrives(
    client: httpx.AsyncClient, server: ServerProcess, ws: ClientConnection, channel_id: str, token: str
) -> None:
    """Publish a valid message: it must be the very next frame (nothing was relayed before it)."""
    marker = b"the next valid message"
    response = await publish(client, server.url, channel_id, marker, token=token)
    assert response.status_code == 204, response.text
    assert await recv_binary(ws, 10) == marker


# --- publish: size ---------------------------------------------------------------------------


async def test_publish_over_max_message_size_with_content_length_is_413_and_relays_nothing(
    small_server: ServerProcess,
) -> None:
    channel_id, token = create_channel(small_server.url)
    async with subscribe(small_server.url, channel_id, token) as ws, http_client() as client:
        response = await publish(client, small_server.url, channel_id, b"x" * (SMALL_MAX + 1), token=token)
        assert response.request.headers["content-length"] == str(SMALL_MAX + 1)
        assert_problem(response, 413)
        await assert_only_next_message_arrives(client, small_server, ws, channel_id, token)


async def test_publish_of_exactly_max_message_size_is_relayed(small_server: ServerProcess) -> None:
    channel_id, token = create_channel(small_server.url)
    payload = bytes(i % 251 for i in range(SMALL_MAX))
    async with subscribe(small_server.url, channel_id, token) as ws, http_client() as client:
        response = await publish(client, small_server.url, channel_id, payload, token=token)
        assert response.status_code == 204, response.text
        assert await recv_binary(ws) == payload


async def test_publish_over_max_message_size_chunked_is_413_and_relays_nothing(small_server: ServerProcess) -> None:
    channel_id, token = create_channel(small_server.url)

    async def chunks():  # no Content-Length: httpx sends Transfer-Encoding: chunked
        for _ in range(4):
            yield b"y" * 512

    async with subscribe(small_server.url, channel_id, token) as ws, http_client() as client:
        response = await client.post(
            channel_url(small_server.url, channel_id), content=chunks(), headers={"authorization": f"Bearer {token}"}
        )
        assert "content-length" not in response.request.headers
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert_problem(response, 413)
        await assert_only_next_message_arrives(client, small_server, ws, channel_id, token)


async def test_publish_chunked_over_a_raw_socket_past_the_limit_is_413_and_relays_nothing(
    small_server: ServerProcess,
) -> None:
    channel_id, token = create_channel(small_server.url)
    path = f"{CHANNELS}/{quote(channel_id, safe='')}"
    chunk = b"z" * 700
    request = (
        (
            f"POST {path} HTTP/1.1\r\nHost: {small_server.host}:{small_server.port}\r\n"
            f"Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        ).encode()
        + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2
        + b"0\r\n\r\n"
    )
    async with subscribe(small_server.url, channel_id, token) as ws, http_client() as client:
        with socket.create_connection((small_server.host, small_server.port), timeout=timeout(10)) as sock:
            sock.sendall(request)
            answer = b""
            while chunk_read := sock.recv(65536):
                answer += chunk_read
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 413"), answer[:300]
        assert b"application/problem+json" in answer.split(b"\r\n\r\n", 1)[0].lower()
        await assert_only_next_message_arrives(client, small_server, ws, channel_id, token)


async def test_publish_over_the_default_max_message_size_is_413_and_relays_nothing(
    shared_server: ServerProcess,
) -> None:
    channel_id, token = create_channel(shared_server.url)
    async with subscribe(shared_server.url, channel_id, token) as ws, http_client() as client:
        response = await publish(client, shared_server.url, channel_id, b"\x00" * (DEFAULT_MAX + 1), token=token)
        assert_problem(response, 413)
        await assert_only_next_message_arrives(client, shared_server, ws, channel_id, token)


# --- publish: path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoded_id",
    [
        pytest.param("%20", id="space"),
        pytest.param("x" * 129, id="129-chars"),
        pytest.param("%2F", id="encoded-slash"),
        pytest.param("a%2Fb", id="encoded-slash-inside"),
        pytest.param("a%09b", id="tab"),
        pytest.param("a%00b", id="nul"),
        pytest.param("", id="empty"),
    ],
)
def test_publish_to_an_invalid_channel_id_is_400_or_404(shared_server: ServerProcess, encoded_id: str) -> None:
    """With a valid API key, so only the id can be wrong."""
    response = httpx.post(
        f"{shared_server.url}{CHANNELS}/{encoded_id}",
        headers={"x-api-key": API_KEY},
        content=b"data",
        timeout=timeout(10),
    )
    assert_problem(response, (400, 404))


# --- routing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"),
        ("GET", "/nope"),
        ("POST", "/webchannel/v1"),
        ("POST", "/webchannel/v2/channels"),
        ("POST", "/webchannel/v1/channel"),
        ("GET", "/healthz/extra"),
    ],
)
def test_unknown_paths_are_404_problems(shared_server: ServerProcess, method: str, path: str) -> None:
    response = httpx.request(method, f"{shared_server.url}{path}", timeout=timeout(10))
    assert_problem(response, 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", CHANNELS),
        ("PUT", CHANNELS),
        ("DELETE", CHANNELS),
        ("PUT", f"{CHANNELS}/abc"),
        ("PATCH", f"{CHANNELS}/abc"),
        ("POST", "/healthz"),
        ("POST", "/readyz"),
        ("POST", "/metrics"),
        ("DELETE", "/metrics"),
    ],
)
def test_wrong_methods_are_405_problems(shared_server: ServerProcess, method: str, path: str) -> None:
    response = httpx.request(method, f"{shared_server.url}{path}", headers={"x-api-key": API_KEY}, timeout=timeout(10))
    assert_problem(response, 405)
    assert response.headers.get("allow"), "a 405 must say which methods are allowed (Allow header)"
    assert method not in {m.strip() for m in response.headers["allow"].split(",")}


# --- subscribe: refused handshakes -----------------------------------------------------------


async def test_subscribe_without_a_token_is_refused(shared_server: ServerProcess) -> None:
    channel_id, _ = create_channel(shared_server.url)
    assert await refused_status(ws_url(shared_server.url, channel_id)) in (401, 403)


@pytest.mark.parametrize(
    "kind", ["garbage", "expired", "alg-none", "wrong-secret", "other-channel", "empty", "api-key"]
)
@pytest.mark.parametrize("where", ["query", "header"])
async def test_subscribe_with_a_bad_token_is_refused(shared_server: ServerProcess, kind: str, where: str) -> None:
    channel_id, _ = create_channel(shared_server.url)
    _, other_token = create_channel(shared_server.url)
    token = {
        "garbage": "not.a.token",
        "expired": expired_token(channel_id),
        "alg-none": alg_none_token(channel_id),
        "wrong-secret": make_token(channel_id, secret="another-secret-" + "x" * 32),
        "other-channel": other_token,
        "empty": "",
        "api-key": API_KEY,
    }[kind]
    if where == "query":
        status = await refused_status(ws_url(shared_server.url, channel_id, token))
    else:
        status = await refused_status(ws_url(shared_server.url, channel_id), {"Authorization": f"Bearer {token}"})
    assert status in (401, 403)


@pytest.mark.parametrize("channel_id", [p.values[0] for p in INVALID_IDS if p.values[0]])
async def test_subscribe_to_an_invalid_channel_id_is_refused(shared_server: ServerProcess, channel_id: str) -> None:
    """Even with a correctly signed token whose ``cid`` is that very (invalid) id."""
    token = make_token(channel_id)
    assert await refused_status(ws_url(shared_server.url, channel_id, token)) in (401, 403)


@pytest.mark.parametrize("path", ["/", "/nope", "/webchannel/v1/channels", "/webchannel/v2/channels/abc", "/healthz"])
async def test_subscribe_on_an_unknown_path_is_refused(shared_server: ServerProcess, path: str) -> None:
    _, token = create_channel(shared_server.url)
    url = f"{shared_server.ws_url}{path}?access_token={quote(token, safe='')}"
    assert await refused_status(url, {"Authorization": f"Bearer {token}"}) in (401, 403)


async def test_a_refused_subscriber_gets_nothing_and_the_valid_one_still_works(shared_server: ServerProcess) -> None:
    """Refusal is per handshake: it does not disturb an accepted subscriber of the same channel."""
    channel_id, token = create_channel(shared_server.url)
    async with subscribe(shared_server.url, channel_id, token) as ws, http_client() as client:
        assert await refused_status(ws_url(shared_server.url, channel_id, "garbage")) in (401, 403)
        await assert_only_next_message_arrives(client, shared_server, ws, channel_id, token)
