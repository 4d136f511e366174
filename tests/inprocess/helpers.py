"""Helpers for the in-process tests: paths, raw ASGI requests, subscribers, metrics, channel-layer settings.

Tokens and the problem+json check come from :mod:`tests.common`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any
from urllib.parse import quote

from channels.testing import HttpCommunicator, WebsocketCommunicator
from prometheus_client import REGISTRY

from tests.common import API_KEY, assert_problem_parts, make_token
from tests.harness import free_port, timeout
from webchannel_project.asgi import application

CREATE_PATH = "/webchannel/v1/channels"
API_KEY_HEADERS = {"x-api-key": API_KEY}


def channel_path(channel_id: str) -> str:
    """The URL path of a channel, its id percent-encoded as a client would send it."""
    return f"{CREATE_PATH}/{quote(channel_id, safe='')}"


class AsgiResponse:
    """A response read from the ASGI application: status, headers (lower-cased names) and body."""

    def __init__(self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.header_list = [(name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in headers]
        self.headers = dict(self.header_list)
        self.body = body

    def assert_problem(self, expected: int) -> dict[str, Any]:
        return assert_problem_parts(self.status, self.headers.get("content-type"), self.body, expected)


def asgi_headers(headers: Mapping[str, str] | None, body: bytes | None, content_length: bool = True) -> list:
    result = [(b"host", b"testserver")]
    result += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    if content_length and body is not None:
        result.append((b"content-length", str(len(body)).encode()))
    return result


async def asgi_request(
    method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> AsgiResponse:
    """One request through the full ASGI application (body-limit middleware included)."""
    communicator = HttpCommunicator(application, method, path, body=body, headers=asgi_headers(headers, body))
    try:
        response = await communicator.get_response(timeout=timeout(5))
        await communicator.wait(timeout(5))
    finally:
        communicator.stop(exceptions=False)
    return AsgiResponse(response["status"], response["headers"], response["body"])


@contextlib.asynccontextmanager
async def subscriber(
    channel_id: str, token: str | None = None, *, headers: list[tuple[bytes, bytes]] | None = None
) -> AsyncIterator[WebsocketCommunicator]:
    """A connected WebSocket subscriber of ``channel_id`` (token in ``access_token``), disconnected after."""
    token = make_token(channel_id) if token is None and headers is None else token
    path = channel_path(channel_id) + (f"?access_token={token}" if token else "")
    communicator = WebsocketCommunicator(application, path, headers=headers)
    try:
        connected, _ = await communicator.connect(timeout(5))
        assert connected, f"subscribe to {channel_id!r} was refused"
        yield communicator
    finally:
        await communicator.disconnect(timeout=timeout(5))


async def receive_frame(communicator: WebsocketCommunicator) -> bytes:
    """The next frame, which must be binary; returns its bytes."""
    message = await communicator.receive_output(timeout(5))
    assert message["type"] == "websocket.send", message
    assert "text" not in message or message["text"] is None, f"expected a binary frame, got {message!r}"
    assert isinstance(message.get("bytes"), bytes), message
    return message["bytes"]


def sample(name: str, labels: Mapping[str, str] | None = None) -> float:
    """The current value of a Prometheus sample in this process (0 when absent)."""
    value = REGISTRY.get_sample_value(name, dict(labels or {}))
    return 0.0 if value is None else value


def closed_port_redis_url() -> str:
    """A Redis URL on a loopback port where nothing listens."""
    return f"redis://127.0.0.1:{free_port()}/0"


def redis_layers(url: str, **config: Any) -> dict[str, Any]:
    """``CHANNEL_LAYERS`` for webchannel's Redis pub/sub layer at ``url``."""
    return {
        "default": {
            "BACKEND": "channels_api.server.redis_layer.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": url, "socket_connect_timeout": 2}], **config},
        }
    }


def in_memory_layers(max_backlog_bytes: int) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "channels_api.layers.InMemoryChannelLayer",
            "CONFIG": {"max_backlog_bytes": max_backlog_bytes},
        }
    }
