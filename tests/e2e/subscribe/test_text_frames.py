"""``?frames=text`` on the subscribe URL, against a real ``manage.py serve`` with ``websockets``.

Valid UTF-8 payloads arrive as text frames, others as binary frames, bytes unchanged; the
default stays binary; subscribers of both kinds on one channel each get their own kind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.helpers import create_channel, http_client, publish, recv_binary, refused_status, ws_url
from tests.harness import timeout

PAYLOADS = [
    ("ascii", b"hello"),
    ("multi-byte", "t\u00e9st \U0001f680 \u65e5\u672c".encode()),
    ("empty", b""),
    ("line breaks", b"a\r\nb\rc\nd"),
    ("large", ("\u00e9" * 100_000).encode()),
]
INVALID_UTF8 = [
    ("lone continuation byte", b"\x80abc"),
    ("truncated sequence", "\u00e9".encode()[:1]),
    ("surrogate", b"\xed\xa0\x80"),
    ("overlong", b"\xc0\xaf"),
    ("random bytes", bytes(range(256))),
]


@contextlib.asynccontextmanager
async def text_subscriber(base_url: str, channel_id: str, token: str, frames: str = "text") -> AsyncIterator[Any]:
    url = ws_url(base_url, channel_id, token) + f"&frames={frames}"
    async with connect(url, open_timeout=timeout(10), max_size=None) as ws:
        yield ws


async def recv_any(ws: ClientConnection, seconds: float = 10) -> str | bytes:
    async with asyncio.timeout(timeout(seconds)):
        return await ws.recv()


async def recv_kind(ws: ClientConnection) -> tuple[str, bytes]:
    """The next frame's kind and exact payload bytes (a text frame's str re-encoded: UTF-8 round-trips)."""
    message = await recv_any(ws)
    if isinstance(message, str):
        return "text", message.encode("utf-8")
    return "binary", message


@pytest.mark.parametrize(
    ("kind", "payloads"),
    [("text", PAYLOADS), ("binary", INVALID_UTF8)],
    ids=["utf8-payloads-arrive-as-text-frames-with-their-exact-bytes", "invalid-utf8-arrives-as-binary-frames"],
)
async def test_each_payload_arrives_as_the_frame_kind_its_bytes_allow(shared_server, kind, payloads):
    channel_id, token = create_channel(shared_server.url)
    async with text_subscriber(shared_server.url, channel_id, token) as ws, http_client() as client:
        for name, payload in payloads:
            assert (await publish(client, shared_server.url, channel_id, payload, token=token)).status_code == 204
            assert await recv_kind(ws) == (kind, payload), name


async def test_mixed_subscribers_each_get_their_own_frame_kind_in_order(shared_server):
    channel_id, token = create_channel(shared_server.url)
    messages = [b"one", b"\xff two", "dr\u00e9i".encode(), b"", b"\x00four"]
    async with contextlib.AsyncExitStack() as stack:
        texts = [
            await stack.enter_async_context(text_subscriber(shared_server.url, channel_id, token)) for _ in range(3)
        ]
        explicit_binary = await stack.enter_async_context(
            text_subscriber(shared_server.url, channel_id, token, frames="binary")
        )
        default = await stack.enter_async_context(
            connect(ws_url(shared_server.url, channel_id, token), open_timeout=timeout(10))
        )
        async with http_client() as client:
            for payload in messages:
                assert (await publish(client, shared_server.url, channel_id, payload, token=token)).status_code == 204
        for ws in texts:
            received = [await recv_kind(ws) for _ in messages]
            assert received == [("binary" if b"\xff" in m else "text", m) for m in messages]
        for ws in (explicit_binary, default):
            assert [await recv_binary(ws) for _ in messages] == messages


@pytest.mark.parametrize("query", ["frames=TEXT", "frames=json", "frames=", "frames=text&frames=binary"])
async def test_an_unknown_frames_value_refuses_the_handshake(shared_server, query):
    channel_id, token = create_channel(shared_server.url)
    assert await refused_status(ws_url(shared_server.url, channel_id, token) + "&" + query) == 403
