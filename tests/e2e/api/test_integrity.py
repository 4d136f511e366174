"""Bytes in, the same bytes out, from publish to subscribers over real HTTP and WebSockets.

Every published body reaches every subscriber as exactly one binary frame holding exactly
those bytes, whatever they are and whatever Content-Type the publisher sent, in publish order.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest

from tests.common import b64url_decode, token_claims
from tests.e2e.helpers import (
    CHANNELS,
    channel_url,
    create_channel,
    http_client,
    publish,
    recv_binary,
    subscribe,
)
from tests.harness import API_KEY, ServerProcess, timeout

SENTINEL = b"--sentinel--"

PAYLOADS = [
    pytest.param(bytes(range(256)), id="every-byte-value"),
    pytest.param(b"", id="empty"),
    pytest.param(bytes(random.Random(7).randbytes(524288)), id="512KiB"),
    pytest.param(random.Random(11).randbytes(4099), id="random-binary"),
    pytest.param(b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc\x80\xc0\xaf\xed\xa0\x80", id="non-utf8"),
    pytest.param(b"\x00" * 3, id="nul-bytes"),
]


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_message_arrives_as_exactly_one_binary_frame_with_exactly_its_bytes(
    shared_server: ServerProcess, payload: bytes
) -> None:
    channel_id, token = create_channel(shared_server.url)
    async with subscribe(shared_server.url, channel_id, token) as ws, http_client() as client:
        response = await publish(client, shared_server.url, channel_id, payload, token=token)
        assert response.status_code == 204, response.text
        response = await publish(client, shared_server.url, channel_id, SENTINEL, token=token)
        assert response.status_code == 204, response.text
        received = await recv_binary(ws)
        assert len(received) == len(payload)
        assert received == payload
        # Exactly one frame: the next thing on the socket is the next message.
        assert await recv_binary(ws) == SENTINEL


def _built(**kwargs: object) -> tuple[dict[str, str], bytes]:
    """The headers and body httpx itself produces for ``data=``/``files=`` (what a real client sends)."""
    request = httpx.Request("POST", "http://example.invalid/", **kwargs)  # type: ignore[arg-type]
    body = request.read()
    return {"content-type": request.headers["content-type"]}, body


_FORM_HEADERS, _FORM_BODY = _built(data={"progress": "42", "note": "a b&c=d", "é": "ü"})
_MULTIPART_HEADERS, _MULTIPART_BODY = _built(
    data={"field": "value"},
    files={"file": ("report.bin", bytes(range(256)) + b"\r\n--not-a-boundary\r\n", "application/octet-stream")},
)
# What `curl -F` sends: a complete multipart document, with its boundary in the Content-Type.
_BOUNDARY = _MULTIPART_HEADERS["content-type"].partition("multipart/form-data; boundary=")[2].encode()
assert _BOUNDARY
assert _MULTIPART_BODY.startswith(b"--" + _BOUNDARY + b"\r\n")
assert _MULTIPART_BODY.endswith(b"--" + _BOUNDARY + b"--\r\n")

BODIES = [
    # What `curl --data '{"progress": 42}'` sends: a JSON text labelled as a form.
    pytest.param(
        {"content-type": "application/x-www-form-urlencoded"}, b'{"progress": 42}', id="curl-data-form-urlencoded"
    ),
    pytest.param(_FORM_HEADERS, _FORM_BODY, id="real-form-urlencoded"),
    pytest.param(_MULTIPART_HEADERS, _MULTIPART_BODY, id="real-multipart"),
    pytest.param(
        {"content-type": "multipart/form-data; boundary=xyz"}, b"--xyz\r\ntruncated, no end", id="broken-multipart"
    ),
    pytest.param({"content-type": "application/json"}, b'{"progress": 42, "text": "\\u00e9"}', id="json"),
    pytest.param({"content-type": "application/json"}, b"{not json at all", id="invalid-json"),
    pytest.param({"content-type": "text/plain; charset=utf-8"}, b"\xff\xfe not utf-8", id="text-plain-non-utf8"),
    pytest.param({}, b"no content type \x00\x01", id="no-content-type"),
    # Not decoded either: a compressed body arrives compressed.
    pytest.param(
        {"content-type": "application/json", "content-encoding": "gzip"},
        gzip.compress(b'{"progress": 42}', mtime=0),
        id="gzip-content-encoding",
    ),
]


@pytest.mark.parametrize(("headers", "body"), BODIES)
async def test_body_is_relayed_byte_for_byte_whatever_the_content_type(
    shared_server: ServerProcess, headers: dict[str, str], body: bytes
) -> None:
    channel_id, token = create_channel(shared_server.url)
    async with subscribe(shared_server.url, channel_id, token) as ws, http_client() as client:
        request = client.build_request(
            "POST",
            channel_url(shared_server.url, channel_id),
            content=body,
            headers={"authorization": f"Bearer {token}", **headers},
        )
        if not headers:
            assert "content-type" not in request.headers
        else:
            assert request.headers["content-type"] == headers["content-type"]
        response = await client.send(request)
        assert response.status_code == 204, response.text
        assert await recv_binary(ws) == body


async def test_chunked_body_without_content_length_is_relayed_byte_for_byte(shared_server: ServerProcess) -> None:
    channel_id, token = create_channel(shared_server.url)
    parts = [bytes(range(256)), b"", b"\r\n0\r\n\r\n", random.Random(3).randbytes(70000)]

    async def chunks() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    async with subscribe(shared_server.url, channel_id, token) as ws, http_client() as client:
        response = await client.post(
            channel_url(shared_server.url, channel_id), content=chunks(), headers={"authorization": f"Bearer {token}"}
        )
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert response.status_code == 204, response.text
        assert await recv_binary(ws) == b"".join(parts)


async def test_body_sent_after_expect_100_continue_is_relayed(shared_server: ServerProcess) -> None:
    """What curl does for larger bodies: headers with ``Expect: 100-continue``, the body after ``100``."""
    channel_id, token = create_channel(shared_server.url)
    body = random.Random(5).randbytes(200_000)
    head = (
        f"POST {CHANNELS}/{quote(channel_id, safe='')} HTTP/1.1\r\nHost: {shared_server.host}:{shared_server.port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    async with subscribe(shared_server.url, channel_id, token) as ws:
        reader, writer = await asyncio.open_connection(shared_server.host, shared_server.port)
        try:
            writer.write(head)
            async with asyncio.timeout(timeout(10)):
                interim = await reader.readuntil(b"\r\n\r\n")
            assert interim.startswith(b"HTTP/1.1 100"), interim
            writer.write(body)
            async with asyncio.timeout(timeout(10)):
                final = await reader.readuntil(b"\r\n\r\n")
            assert final.startswith(b"HTTP/1.1 204"), final
        finally:
            writer.close()
            await writer.wait_closed()
        assert await recv_binary(ws) == body


async def test_fifty_subscribers_each_receive_every_message_in_order(shared_server: ServerProcess) -> None:
    channel_id, token = create_channel(shared_server.url)
    messages = [f"message {i}".encode() + bytes([i]) for i in range(20)]

    async def subscriber(ready: asyncio.Event, go: asyncio.Event) -> list[bytes]:
        async with subscribe(shared_server.url, channel_id, token) as ws:
            ready.set()
            await go.wait()
            return [await recv_binary(ws, 30) for _ in messages]

    go = asyncio.Event()
    readies = [asyncio.Event() for _ in range(50)]
    tasks = [asyncio.create_task(subscriber(ready, go)) for ready in readies]
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(ready.wait() for ready in readies))
        go.set()
        async with http_client() as client:
            for message in messages:
                response = await publish(client, shared_server.url, channel_id, message, token=token)
                assert response.status_code == 204, response.text
        results = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert len(results) == 50
    for received in results:
        assert received == messages


@pytest.mark.slow
async def test_two_thousand_sequential_publishes_arrive_complete_and_in_order_at_busy_and_idle_subscribers(
    shared_server: ServerProcess,
) -> None:
    """Each publish is answered before the next is sent; one subscriber reads all along, the other
    reads nothing until the burst is over (the stock in-memory layer drops after 100 queued)."""
    channel_id, token = create_channel(shared_server.url)
    count = 2000
    expected = [b"burst %d" % i for i in range(count)]
    async with (
        subscribe(shared_server.url, channel_id, token) as busy,
        subscribe(shared_server.url, channel_id, token) as idle,
        http_client() as client,
    ):

        async def read_all() -> list[bytes]:
            return [await recv_binary(busy, 30) for _ in range(count)]

        reading = asyncio.create_task(read_all())
        try:
            for message in expected:
                response = await publish(client, shared_server.url, channel_id, message, token=token)
                assert response.status_code == 204, response.text
            busy_received = await reading
        finally:
            reading.cancel()
        assert busy_received == expected
        idle_received = [await recv_binary(idle, 30) for _ in range(count)]
        assert idle_received == expected
        response = await publish(client, shared_server.url, channel_id, SENTINEL, token=token)
        assert response.status_code == 204
        assert await recv_binary(busy) == SENTINEL
        assert await recv_binary(idle) == SENTINEL


async def test_subscriber_may_send_the_token_in_an_authorization_bearer_header(shared_server: ServerProcess) -> None:
    channel_id, token = create_channel(shared_server.url)
    async with subscribe(shared_server.url, channel_id, token, header=True) as ws, http_client() as client:
        response = await publish(client, shared_server.url, channel_id, b"via header", token=token)
        assert response.status_code == 204, response.text
        assert await recv_binary(ws) == b"via header"


async def test_publisher_may_use_the_api_key_instead_of_the_token(shared_server: ServerProcess) -> None:
    channel_id, token = create_channel(shared_server.url)
    async with subscribe(shared_server.url, channel_id, token) as ws, http_client() as client:
        response = await client.post(
            channel_url(shared_server.url, channel_id), content=b"by api key", headers={"x-api-key": API_KEY}
        )
        assert response.status_code == 204, response.text
        assert await recv_binary(ws) == b"by api key"


@pytest.mark.parametrize("channel_id", ["tést", "🚀-emoji-🎉", "日本語", "a%2Fb-literal-percent", "ü?#&=+;"])
async def test_percent_encoded_unicode_channel_ids_work_for_subscribe_and_publish(
    shared_server: ServerProcess, channel_id: str
) -> None:
    created_id, token = create_channel(shared_server.url, channel_id)
    assert created_id == channel_id
    assert token_claims(token)["cid"] == channel_id
    async with subscribe(shared_server.url, channel_id, token) as ws, http_client() as client:
        payload = f"to {channel_id}".encode()
        response = await publish(client, shared_server.url, channel_id, payload, token=token)
        assert response.status_code == 204, response.text
        assert await recv_binary(ws) == payload


async def test_unicode_channels_are_distinct_from_their_lookalikes(shared_server: ServerProcess) -> None:
    """``tést`` (precomposed) and ``te\u0301st`` (combining accent) are different ids: no cross-talk."""
    composed_id, composed_token = create_channel(shared_server.url, "t\u00e9st-distinct")
    decomposed_id, decomposed_token = create_channel(shared_server.url, "te\u0301st-distinct")
    async with (
        subscribe(shared_server.url, composed_id, composed_token) as composed,
        subscribe(shared_server.url, decomposed_id, decomposed_token) as decomposed,
        http_client() as client,
    ):
        assert (
            await publish(client, shared_server.url, decomposed_id, b"to decomposed", token=decomposed_token)
        ).status_code == 204
        assert (
            await publish(client, shared_server.url, composed_id, b"to composed", token=composed_token)
        ).status_code == 204
        assert await recv_binary(composed) == b"to composed"
        assert await recv_binary(decomposed) == b"to decomposed"


def test_token_is_readable_the_browser_way(shared_server: ServerProcess) -> None:
    """``JSON.parse(atob(token.split(".")[1])).cid`` is the channel id; the token is a 3-part HS256 JWT."""
    response = httpx.post(f"{shared_server.url}/webchannel/v1/channels", headers={"x-api-key": API_KEY})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    channel_id, token = document["channelId"], document["token"]
    assert len(channel_id) >= 21
    assert all(c.isalnum() or c in "-_" for c in channel_id), channel_id
    header_part, payload_part, signature = token.split(".")
    assert signature
    assert json.loads(b64url_decode(header_part))["alg"] == "HS256"
    claims = json.loads(b64url_decode(payload_part))
    assert claims["cid"] == channel_id
    assert isinstance(claims["exp"], int)
    assert isinstance(claims["iat"], int)
    assert 3590 <= claims["exp"] - claims["iat"] <= 3610  # default channel.ttl
