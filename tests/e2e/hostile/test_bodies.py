"""Oversized request bodies are refused without being buffered.

A publish that announces a 1 GB body, and a chunked publish with no length that never ends, are
both answered 413 (problem+json) while the client is still sending; the server's resident memory
(``/proc/<pid>/status``) grows by less than 20 MB; nothing reaches the channel's subscriber and
the server keeps serving. ``Expect: 100-continue`` with an oversized length gets the 413 and
never a ``100 Continue``.
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from tests.common import assert_problem_parts
from tests.e2e.helpers import (
    CHANNELS,
    RssWatch,
    create_channel,
    http_client,
    publish,
    recv_binary,
    subscribe,
)
from tests.harness import ServerProcess, base_config, serving, timeout

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
GIB_BODY = 1024 * MIB  # 1073741824
BLOCK = (b"refused body " * (MIB // 13 + 1))[:MIB]
RSS_GROWTH_LIMIT = 20 * MIB
MAX_SENT_BEFORE_413 = 256 * MIB


@pytest.fixture(scope="module")
def body_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serving(tmp_path_factory.mktemp("bodies"), base_config()) as server:
        yield server


@dataclass
class Answer:
    raw: bytes
    body_bytes_sent: int  # before the response was complete
    ended: str  # "answered", "eof", "reset" or "send-failed"
    sent_after_answer: int = 0  # body bytes the server took (and discarded) after answering
    cut_after: float | None = None  # seconds from the answer until the server ended the connection

    @property
    def head(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[0]

    @property
    def status(self) -> int:
        status_line = self.raw.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 "), f"no HTTP status line in {self.raw[:300]!r} ({self.ended})"
        return int(status_line.split()[1])

    def describe(self) -> str:
        cut = "" if self.cut_after is None else f", connection cut {self.cut_after:.1f}s later"
        status_line = self.raw.split(b"\r\n", 1)[0]
        return (
            f"status line {status_line!r} after {self.body_bytes_sent / MIB:.1f} MiB of body; "
            f"{self.sent_after_answer / MIB:.1f} MiB more taken after it{cut}"
        )

    def headers(self) -> dict[str, str]:
        lines = self.head.decode("latin-1").split("\r\n")[1:]
        return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}

    def body(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[1]


def complete_response(raw: bytes) -> bool:
    """True once ``raw`` holds a whole response (head, and a body of its Content-Length)."""
    if b"\r\n\r\n" not in raw:
        return False
    head, body = raw.split(b"\r\n\r\n", 1)
    if head.startswith(b"HTTP/1.1 100"):
        return True  # an interim response: complete enough to fail on
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False


def request_head(server: ServerProcess, channel_id: str, token: str, extra: str) -> bytes:
    path = f"{CHANNELS}/{quote(channel_id, safe='')}"
    return (
        f"POST {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/octet-stream\r\n{extra}\r\n"
    ).encode()


def send_until_answered(server: ServerProcess, head: bytes, blocks: Iterator[bytes], seconds: float = 20) -> Answer:
    """Send ``head``, then ``blocks`` for as long as the server takes them, until its response is
    readable in full (or the connection ends). Then keep sending until the server cuts the
    connection (it discards a refused body for a moment, then closes): the discarding must not
    cost memory either. Returns what was read and how many body bytes went before and after."""
    raw = b""
    sent = 0
    pending = memoryview(b"")
    answer: Answer | None = None
    answered_at = 0.0
    deadline = time.monotonic() + timeout(seconds)
    with socket.create_connection((server.host, server.port), timeout=timeout(10)) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                what = "a complete response" if answer is None else "the server to end the connection"
                raise AssertionError(f"no {what} within {timeout(seconds):.0f}s ({sent} body bytes sent)")
            if not pending:
                pending = memoryview(next(blocks, b""))
            readable, writable, _ = select.select([sock], [sock] if pending else [], [], remaining)
            ended = None
            if readable:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk, ended = b"", "reset"
                if not chunk:
                    ended = ended or "eof"
                raw += chunk
                if answer is None and complete_response(raw):
                    answer = Answer(raw, sent, "answered")
                    answered_at = time.monotonic()
            elif writable:
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    ended = "send-failed"
                    raw += read_what_is_left(sock)
                else:
                    sent += n
                    pending = pending[n:]
            if ended is not None:
                if answer is None:
                    return Answer(raw, sent, ended)
                answer.sent_after_answer = sent - answer.body_bytes_sent
                answer.cut_after = time.monotonic() - answered_at
                return answer


def read_what_is_left(sock: socket.socket) -> bytes:
    sock.settimeout(timeout(2))
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def content_length_blocks(total: int) -> Iterator[bytes]:
    for _ in range(total // len(BLOCK)):
        yield BLOCK


def chunked_blocks(limit_bytes: int) -> Iterator[bytes]:
    """A chunked body of 1 MiB chunks that would go on for ``limit_bytes`` (never terminated)."""
    framed = b"%x\r\n%s\r\n" % (len(BLOCK), BLOCK)
    for _ in range(limit_bytes // len(BLOCK)):
        yield framed


def assert_413_problem(answer: Answer) -> None:
    assert answer.status == 413, f"{answer.raw[:300]!r} ({answer.ended}, {answer.body_bytes_sent} body bytes sent)"
    headers = answer.headers()
    assert_problem_parts(answer.status, headers.get("content-type"), answer.body()[: int(headers["content-length"])])


async def test_a_1_gb_body_and_an_endless_chunked_body_are_refused_with_413_without_buffering(
    body_server: ServerProcess,
) -> None:
    server = body_server
    channel_id, token = create_channel(server.url)
    async with http_client() as client, subscribe(server.url, channel_id, token) as ws:
        # Warm up the publish path so the baseline includes it.
        response = await publish(client, server.url, channel_id, b"warm-up", token=token)
        assert response.status_code == 204
        assert await recv_binary(ws) == b"warm-up"

        watch = RssWatch(server.pid).start()
        try:
            with_length = await asyncio.to_thread(
                send_until_answered,
                server,
                request_head(server, channel_id, token, f"Content-Length: {GIB_BODY}\r\n"),
                content_length_blocks(GIB_BODY),
            )
            chunked = await asyncio.to_thread(
                send_until_answered,
                server,
                request_head(server, channel_id, token, "Transfer-Encoding: chunked\r\n"),
                chunked_blocks(GIB_BODY),
            )
        finally:
            watch.stop()
        print(watch.report("a 1 GB Content-Length body, then an endless chunked body"))
        for name, answer in (("Content-Length: 1 GB", with_length), ("chunked", chunked)):
            print(f"[bodies] {name}: {answer.describe()}")
            assert_413_problem(answer)
            # Answered from the headers / as the limit passed, not after reading the whole body
            # (what the kernel buffers on loopback is far below this).
            assert answer.body_bytes_sent < MAX_SENT_BEFORE_413, answer.describe()
            assert answer.cut_after is not None, answer.describe()
            assert answer.cut_after < timeout(10), answer.describe()
        assert watch.growth < RSS_GROWTH_LIMIT, watch.report("oversized bodies")

        # Still serving, and nothing of the refused bodies reached the subscriber.
        response = await client.get(f"{server.url}/healthz")
        assert response.status_code == 200
        response = await publish(client, server.url, channel_id, b"after the refused bodies", token=token)
        assert response.status_code == 204, response.text
        assert await recv_binary(ws) == b"after the refused bodies"
    assert server.alive()


def test_expect_100_continue_with_an_oversized_length_gets_413_and_no_100_continue(body_server: ServerProcess) -> None:
    server = body_server
    channel_id, token = create_channel(server.url)
    head = request_head(server, channel_id, token, f"Content-Length: {GIB_BODY}\r\nExpect: 100-continue\r\n")
    raw = b""
    with socket.create_connection((server.host, server.port), timeout=timeout(10)) as sock:
        sock.sendall(head)  # and no body: a client that honours Expect waits for 100 Continue
        deadline = time.monotonic() + timeout(10)
        while True:  # read everything until the server ends the connection
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the connection stayed open; read so far: {raw[:300]!r}"
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            raw += chunk
    answer = Answer(raw, 0, "eof")
    assert not raw.startswith(b"HTTP/1.1 100"), raw[:300]
    assert b"100 Continue" not in raw, raw[:300]
    assert_413_problem(answer)
