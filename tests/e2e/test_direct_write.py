"""Responses written straight to the socket arrive whole and in order.

The server writes a response's head and each body chunk at once when nothing is queued
(what the socket does not take goes into Twisted's buffer behind it; the subscriber tests
with readers that stop reading cover that part). Twenty pipelined requests for a 24 KiB
document, read by a client with a small receive buffer, must come back as twenty whole,
identical responses, nothing more.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

import channels_api
from tests.harness import ServerProcess, base_config, serving, timeout

pytestmark = pytest.mark.e2e

DOCUMENT = (Path(channels_api.__file__).parent / "openapi.json").read_bytes()
REQUESTS = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with serving(tmp_path_factory.mktemp("direct-write"), base_config()) as server:
        yield server


class Reader:
    """Bytes of a socket, read as needed within one deadline."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.sock, self.data = sock, b""
        self.deadline = time.monotonic() + timeout(seconds)

    def until(self, marker: bytes) -> bytes:
        while marker not in self.data:
            self._more()
        found, _, self.data = self.data.partition(marker)
        return found

    def exactly(self, size: int) -> bytes:
        while len(self.data) < size:
            self._more()
        found, self.data = self.data[:size], self.data[size:]
        return found

    def _more(self) -> None:
        remaining = self.deadline - time.monotonic()
        assert remaining > 0, "the responses did not arrive in time"
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        assert chunk, "the server closed the connection"
        self.data += chunk


def read_response(reader: Reader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response with a chunked body: its head and its body."""
    head = reader.until(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower(), head
    body = b""
    while size := int(reader.until(b"\r\n"), 16):
        body += reader.exactly(size)
        assert reader.exactly(2) == b"\r\n"
    assert reader.exactly(2) == b"\r\n"
    return head, body


def test_pipelined_responses_arrive_whole_and_in_order(server: ServerProcess) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        request = b"GET /webchannel/v1/openapi.json?n=%d HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        sock.sendall(b"".join(request % n for n in range(REQUESTS)))
        reader = Reader(sock, 20)
        responses = [read_response(reader) for _ in range(REQUESTS)]
        assert reader.data == b"", "more bytes than the responses"
    for head, body in responses:
        assert head.startswith(b"HTTP/1.1 200 "), head[:80]
        assert body == DOCUMENT
