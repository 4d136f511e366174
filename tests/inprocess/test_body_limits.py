"""Body limits of the ASGI application (the middleware in front of Django): 413 before buffering."""

from __future__ import annotations

import dataclasses
import json

import pytest
from channels.testing import ApplicationCommunicator
from django.test import override_settings

from tests.common import bearer, make_token
from tests.harness import timeout
from webchannel_project.asgi import application

from .helpers import (
    API_KEY_HEADERS,
    CREATE_PATH,
    AsgiResponse,
    asgi_headers,
    asgi_request,
    channel_path,
    receive_frame,
    subscriber,
)

MAX_MESSAGE_SIZE = 524288
CREATE_LIMIT = 16 * 1024


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def read_response(communicator: ApplicationCommunicator) -> AsgiResponse:
    start = await communicator.receive_output(timeout(5))
    assert start["type"] == "http.response.start", start
    body = b""
    while True:
        chunk = await communicator.receive_output(timeout(5))
        assert chunk["type"] == "http.response.body", chunk
        body += chunk.get("body", b"")
        if not chunk.get("more_body", False):
            break
    return AsgiResponse(start["status"], start.get("headers", []), body)


async def declared_only(path: str, declared: int, headers=None) -> AsgiResponse:
    """Send only the headers (Content-Length: ``declared``) and no body at all: the answer must come anyway."""
    scope_headers = [*asgi_headers(headers, None), (b"content-length", str(declared).encode())]
    communicator = ApplicationCommunicator(application, http_scope("POST", path, scope_headers))
    try:
        # Starting the application needs one input; a disconnect would end it, so use a
        # receive-less start: the response must be produced before any body is read.
        communicator.future  # noqa: B018 - starts the application task
        return await read_response(communicator)
    finally:
        communicator.stop(exceptions=False)
        await communicator.wait(timeout(1))


async def chunked(path: str, chunks: list[bytes], headers=None) -> AsgiResponse:
    """Stream ``chunks`` as separate ``http.request`` messages without any Content-Length."""
    communicator = ApplicationCommunicator(application, http_scope("POST", path, asgi_headers(headers, None)))
    try:
        for i, chunk in enumerate(chunks):
            await communicator.send_input({"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1})
        return await read_response(communicator)
    finally:
        communicator.stop(exceptions=False)
        await communicator.wait(timeout(1))


async def test_publish_with_content_length_over_max_message_size_is_413_before_reading_the_body():
    response = await declared_only(channel_path("limit-cl"), MAX_MESSAGE_SIZE + 1, API_KEY_HEADERS)
    response.assert_problem(413)


async def test_create_with_content_length_over_16_kib_is_413_before_reading_the_body():
    response = await declared_only(CREATE_PATH, CREATE_LIMIT + 1, API_KEY_HEADERS)
    response.assert_problem(413)


async def test_publish_over_the_limit_with_content_length_relays_nothing():
    async with subscriber("limit-nothing") as sub:
        response = await asgi_request(
            "POST", channel_path("limit-nothing"), b"x" * (MAX_MESSAGE_SIZE + 1), API_KEY_HEADERS
        )
        response.assert_problem(413)
        assert await sub.receive_nothing()


async def test_chunked_publish_passing_the_limit_is_413_and_relays_nothing():
    chunk = b"y" * 65536
    chunks = [chunk] * (MAX_MESSAGE_SIZE // len(chunk)) + [b"z"]  # one byte too many, no Content-Length
    async with subscriber("limit-chunked") as sub:
        response = await chunked(channel_path("limit-chunked"), chunks, bearer(make_token("limit-chunked")))
        response.assert_problem(413)
        assert await sub.receive_nothing()


async def test_chunked_create_passing_16_kib_is_413():
    body = json.dumps({"channelId": "a"}).encode().ljust(CREATE_LIMIT + 1)
    response = await chunked(CREATE_PATH, [body[:8000], body[8000:16000], body[16000:]], API_KEY_HEADERS)
    response.assert_problem(413)


async def test_publish_of_exactly_max_message_size_is_accepted_and_relayed():
    body = bytes(range(256)) * (MAX_MESSAGE_SIZE // 256)
    assert len(body) == MAX_MESSAGE_SIZE
    async with subscriber("limit-exact") as sub:
        response = await asgi_request("POST", channel_path("limit-exact"), body, bearer(make_token("limit-exact")))
        assert response.status == 204, response.body
        assert await receive_frame(sub) == body


async def test_chunked_publish_of_exactly_max_message_size_is_accepted_and_relayed():
    chunk = b"q" * 65536
    chunks = [chunk] * (MAX_MESSAGE_SIZE // len(chunk))
    async with subscriber("limit-chunked-exact") as sub:
        response = await chunked(channel_path("limit-chunked-exact"), chunks, bearer(make_token("limit-chunked-exact")))
        assert response.status == 204, response.body
        assert await receive_frame(sub) == b"".join(chunks)


async def test_create_of_exactly_16_kib_is_accepted():
    body = json.dumps({"channelId": "exactly-16k"}).encode().ljust(CREATE_LIMIT)
    response = await asgi_request("POST", CREATE_PATH, body, API_KEY_HEADERS)
    assert response.status == 200, response.body
    assert json.loads(response.body)["channelId"] == "exactly-16k"


async def test_create_one_byte_over_16_kib_is_413():
    body = json.dumps({"channelId": "too-big"}).encode().ljust(CREATE_LIMIT + 1)
    response = await asgi_request("POST", CREATE_PATH, body, API_KEY_HEADERS)
    response.assert_problem(413)


@pytest.mark.parametrize("size", [1024, 4096])
async def test_publish_limit_follows_the_configured_max_message_size(settings, size):
    config = settings.WEBCHANNEL
    with override_settings(
        WEBCHANNEL=dataclasses.replace(config, channel=dataclasses.replace(config.channel, max_message_size=size))
    ):
        accepted = await asgi_request("POST", channel_path("limit-config"), b"a" * size, API_KEY_HEADERS)
        refused = await asgi_request("POST", channel_path("limit-config"), b"a" * (size + 1), API_KEY_HEADERS)
    assert accepted.status == 204
    refused.assert_problem(413)
