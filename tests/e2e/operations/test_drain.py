"""On SIGTERM the server finishes the HTTP requests it accepted before it exits.

A publish is *accepted* once the server answered its ``Expect: 100-continue`` (the headers
were read by the server, not just queued by the kernel). Every accepted publish gets a real
response (204, or a problem+json error), none is cut off without one; responses during the
drain say ``Connection: close`` and their connection is closed after them; an idle keep-alive
connection is closed at once. The process still exits 0 within ``server.drain_window`` plus
its margin.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.e2e.helpers import CHANNELS, create_channel, wait_exit
from tests.harness import ServerProcess, base_config, run_serve, timeout, wait_for

pytestmark = pytest.mark.slow

DRAIN_WINDOW = 1.0
DRAIN_MARGIN = 1.0
BODY_SIZE = 64 * 1024
UPLOADS = 10
PUBLISHER_THREADS = 8


class ConnectionEnded(Exception):
    """The server closed or reset the connection."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class RawPublisher:
    """Publishes over one keep-alive HTTP/1.1 connection, each with ``Expect: 100-continue``."""

    def __init__(self, server: ServerProcess, channel_id: str, token: str) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout(10))
        self.buffer = b""
        self.head = (
            f"POST {CHANNELS}/{quote(channel_id, safe='')} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
            "Expect: 100-continue\r\n"
        ).encode()

    def close(self) -> None:
        self.sock.close()

    def send_headers(self, length: int) -> None:
        """Send the request head; return once the server answered 100 Continue (accepted)."""
        try:
            self.sock.sendall(self.head + b"Content-Length: %d\r\n\r\n" % length)
        except OSError as exc:
            raise ConnectionEnded(repr(exc)) from None
        interim = self._read_head()
        assert interim.status == 100, f"expected 100 Continue, got {interim.status}"

    def send_body(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_response(self) -> Response:
        response = self._read_head()
        if "content-length" in response.headers:
            response.body = self._read_exact(int(response.headers["content-length"]))
        elif response.headers.get("transfer-encoding") == "chunked":
            while b"\r\n0\r\n\r\n" not in b"\r\n" + self.buffer:
                self._fill()
            response.body, _, self.buffer = self.buffer.partition(b"0\r\n\r\n")
        return response

    def ended(self) -> bool:
        """Whether the server has closed the connection (EOF or reset) and sent nothing more."""
        try:
            self._fill()
        except ConnectionEnded:
            return not self.buffer
        return False

    def _read_head(self) -> Response:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Response(int(lines[0].split()[1]), headers, b"")

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self._fill()
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise ConnectionEnded(repr(exc)) from None
        if not chunk:
            raise ConnectionEnded("EOF")
        self.buffer += chunk


def assert_real_response(response: Response, what: str) -> None:
    """204, or a problem+json error: a response the client can act on."""
    if response.status != 204:
        assert response.headers.get("content-type", "").startswith("application/problem+json"), (what, response)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    server = run_serve(tmp_path, base_config(server={"drain_window": DRAIN_WINDOW}))
    try:
        server.wait_listening()
        yield server
    finally:
        server.stop()


def test_publishes_still_uploading_at_sigterm_get_their_204_and_idle_connections_close(
    server: ServerProcess,
) -> None:
    channel_id, token = create_channel(server.url)
    idle = RawPublisher(server, channel_id, token)
    uploads = [RawPublisher(server, channel_id, token) for _ in range(UPLOADS)]
    try:
        idle.send_headers(3)
        idle.send_body(b"one")
        assert idle.read_response().status == 204
        for upload in uploads:
            upload.send_headers(BODY_SIZE)
            upload.send_body(b"a" * (BODY_SIZE // 2))

        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        idle.sock.settimeout(timeout(DRAIN_WINDOW))
        assert idle.ended(), "the idle keep-alive connection was not closed by the drain"

        for i, upload in enumerate(uploads):
            upload.send_body(b"b" * (BODY_SIZE - BODY_SIZE // 2))
            response = upload.read_response()
            assert response.status == 204, f"upload {i}: {response}"
            assert response.headers.get("connection") == "close", f"upload {i}: {response.headers}"
            assert upload.ended(), f"upload {i}: the connection stayed open after its response"
        assert time.monotonic() - signalled < DRAIN_WINDOW + DRAIN_MARGIN
    finally:
        for publisher in [idle, *uploads]:
            publisher.close()
    assert wait_exit(server, DRAIN_WINDOW + DRAIN_MARGIN + 3) == 0, server.output()
    assert time.monotonic() - signalled < DRAIN_WINDOW + DRAIN_MARGIN + timeout(1)
    assert "Traceback" not in server.output(), server.output()


def test_a_publish_whose_body_never_completes_gets_503_when_the_drain_ends(server: ServerProcess) -> None:
    channel_id, token = create_channel(server.url)
    stalled = RawPublisher(server, channel_id, token)
    try:
        stalled.send_headers(BODY_SIZE)
        stalled.send_body(b"a" * (BODY_SIZE // 2))
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
        stalled.sock.settimeout(timeout(DRAIN_WINDOW + DRAIN_MARGIN + 3))
        response = stalled.read_response()
        waited = time.monotonic() - signalled
    finally:
        stalled.close()
    assert response.status == 503, response
    assert response.headers.get("content-type", "").startswith("application/problem+json"), response
    assert DRAIN_WINDOW + DRAIN_MARGIN - 0.2 < waited < DRAIN_WINDOW + DRAIN_MARGIN + timeout(1), waited
    assert wait_exit(server, 5) == 0, server.output()
    assert "Traceback" not in server.output(), server.output()


@dataclass
class Tally:
    accepted: int = 0
    answered: int = 0
    closing_answers: int = 0
    failures: list[str] = field(default_factory=list)


def publish_until_refused(
    server: ServerProcess, channel_id: str, token: str, tally: Tally, lock: threading.Lock
) -> None:
    """Publish over keep-alive connections until the server stops accepting; any accepted
    publish without a response is a failure."""
    deadline = time.monotonic() + timeout(20)
    body = b"x" * 4096
    while time.monotonic() < deadline:
        try:
            publisher = RawPublisher(server, channel_id, token)
        except OSError:
            return  # not listening any more: nothing was accepted
        try:
            while time.monotonic() < deadline:
                try:
                    publisher.send_headers(len(body))
                except ConnectionEnded:
                    break  # closed while idle, before accepting this request
                with lock:
                    tally.accepted += 1
                try:
                    publisher.send_body(body)
                    response = publisher.read_response()
                except (ConnectionEnded, OSError) as exc:
                    with lock:
                        tally.failures.append(f"accepted publish cut off without a response: {exc}")
                    return
                assert_real_response(response, "publish during the drain")
                with lock:
                    tally.answered += 1
                if response.headers.get("connection") == "close":
                    with lock:
                        tally.closing_answers += 1
                    break
        except BaseException as exc:
            with lock:
                tally.failures.append(repr(exc))
            return
        finally:
            publisher.close()


def test_publishes_in_flight_when_sigterm_arrives_each_get_a_response(server: ServerProcess) -> None:
    channel_id, token = create_channel(server.url)
    tally, lock = Tally(), threading.Lock()
    threads = [
        threading.Thread(target=publish_until_refused, args=(server, channel_id, token, tally, lock))
        for _ in range(PUBLISHER_THREADS)
    ]
    for thread in threads:
        thread.start()
    try:
        wait_for(
            lambda: tally.answered >= 200 or tally.failures,
            10,
            lambda: f"the publishers to make progress: {tally}",
            interval=0.01,
        )
        assert tally.answered >= 200, f"publishers made no progress: {tally}"
        signalled = time.monotonic()
        server.signal(signal.SIGTERM)
    finally:
        for thread in threads:
            thread.join(timeout(30))
    assert not any(thread.is_alive() for thread in threads)
    assert not tally.failures, tally.failures
    assert tally.accepted == tally.answered, tally
    assert tally.closing_answers > 0, f"no response said Connection: close during the drain: {tally}"
    assert wait_exit(server, DRAIN_WINDOW + DRAIN_MARGIN + 3) == 0, server.output()
    assert time.monotonic() - signalled < DRAIN_WINDOW + DRAIN_MARGIN + timeout(2)
    assert "Traceback" not in server.output(), server.output()
