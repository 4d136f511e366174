"""Helpers for the end-to-end tests in tests/e2e.

Real ``manage.py`` processes (started with :func:`tests.harness.run_serve` /
:func:`tests.harness.serving`), real clients over loopback: ``httpx`` for HTTP, ``websockets``
(asyncio) for subscribers, and a small raw-socket WebSocket client for what a library client
hides (ping frames, a peer that never answers them). Every helper that talks to a server takes
its ``base_url`` (``http://host:port``, e.g. ``ServerProcess.url``). Every wait is bounded by
:func:`tests.harness.timeout`; waits for a condition use :mod:`tests.waiting`. Tokens and the
problem+json check come from :mod:`tests.common`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import re
import socket
import struct
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect

from tests.common import API_KEY
from tests.harness import ServerProcess, timeout
from tests.waiting import eventually, wait_for

CHANNELS = "/webchannel/v1/channels"
RETRYABLE_CLOSE_CODES = {4013, 1012, 1013}

# --- HTTP ------------------------------------------------------------------------------------


def channel_url(base_url: str, channel_id: str) -> str:
    """The publish (or, with ws://, subscribe) URL of ``channel_id``, percent-encoded."""
    return f"{base_url}{CHANNELS}/{quote(channel_id, safe='')}"


def create_channel(base_url: str, channel_id: str | None = None, *, api_key: str = API_KEY) -> tuple[str, str]:
    """Create a channel over HTTP with ``api_key``; return ``(channelId, token)``."""
    body = {} if channel_id is None else {"channelId": channel_id}
    response = httpx.post(f"{base_url}{CHANNELS}", headers={"x-api-key": api_key}, json=body, timeout=timeout(10))
    assert response.status_code == 200, response.text
    document = response.json()
    return document["channelId"], document["token"]


def http_client(**kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=timeout(10), **kwargs)


async def publish(
    client: httpx.AsyncClient,
    base_url: str,
    channel_id: str,
    data: bytes,
    *,
    token: str | None = None,
    api_key: str | None = None,
) -> httpx.Response:
    """POST ``data`` (as ``application/octet-stream``) to the channel with its token and/or an API key."""
    headers = {"content-type": "application/octet-stream"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if api_key is not None:
        headers["x-api-key"] = api_key
    return await client.post(channel_url(base_url, channel_id), content=data, headers=headers)


class KeepAlivePublisher:
    """Sequential publishes over one keep-alive HTTP/1.1 connection (each answered before the next)."""

    def __init__(self, server: ServerProcess, channel_id: str, token: str) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=timeout(10))
        self.head = (
            f"POST {CHANNELS}/{quote(channel_id, safe='')} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
        ).encode()
        self.buffer = b""

    def __enter__(self) -> KeepAlivePublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def publish(self, body: bytes) -> int:
        self.sock.sendall(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the keep-alive connection"
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            assert name.strip().lower() != b"transfer-encoding", head
        while len(self.buffer) < length:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the keep-alive connection"
            self.buffer += chunk
        self.buffer = self.buffer[length:]
        return int(head.split(b" ", 2)[1])


# --- WebSocket (library client) --------------------------------------------------------------


def ws_url(base_url: str, channel_id: str, token: str | None = None) -> str:
    """The subscribe URL of ``channel_id`` (ws://), with the token in ``?access_token=`` if given."""
    url = channel_url(base_url.replace("http://", "ws://", 1), channel_id)
    if token is not None:
        url += f"?access_token={quote(token, safe='')}"
    return url


@contextlib.asynccontextmanager
async def subscribe(
    base_url: str, channel_id: str, token: str, *, header: bool = False
) -> AsyncIterator[ClientConnection]:
    """A subscriber socket: token in ``?access_token=``, or in ``Authorization`` with ``header=True``."""
    kwargs: dict[str, Any] = {"open_timeout": timeout(10), "max_size": None}
    if header:
        url = ws_url(base_url, channel_id)
        kwargs["additional_headers"] = {"Authorization": f"Bearer {token}"}
    else:
        url = ws_url(base_url, channel_id, token)
    async with connect(url, **kwargs) as ws:
        yield ws


async def recv_binary(ws: ClientConnection, seconds: float = 10) -> bytes:
    """The next message, which must be a binary frame, within ``seconds``."""
    async with asyncio.timeout(timeout(seconds)):
        message = await ws.recv()
    assert isinstance(message, bytes), f"expected a binary frame, got a text frame {message[:80]!r}"
    return message


async def refused_status(url: str, headers: dict[str, str] | None = None) -> int:
    """Attempt a WebSocket handshake that must be refused; return the HTTP status of the refusal."""
    try:
        async with connect(url, additional_headers=headers, open_timeout=timeout(10)):
            pass
    except websockets.InvalidStatus as exc:
        return exc.response.status_code
    raise AssertionError(f"the handshake to {url} was accepted (upgraded)")


async def closed_with(ws: ClientConnection, seconds: float = 10) -> int | None:
    """Wait until the server closes ``ws`` (ignoring data frames); return the close code it sent."""
    async with asyncio.timeout(timeout(seconds)):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None


# --- metrics ---------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def metrics_text(base_url: str, auth: tuple[str, str] | None = None) -> str:
    response = httpx.get(f"{base_url}/metrics", auth=auth, timeout=timeout(10))
    assert response.status_code == 200, response.text
    return response.text


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of sample ``name`` whose labels include ``labels``, from Prometheus text."""
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in (labels or {}).items()):
            return float(match.group(3))
    return None


def users_connected(base_url: str) -> float:
    value = metric_value(metrics_text(base_url), "webchannel_users_connected")
    assert value is not None, "webchannel_users_connected is missing from /metrics"
    return value


def settled_users_connected(base_url: str, seconds: float = 10) -> float:
    """``webchannel_users_connected`` once it has stopped moving (earlier tests' sockets may still be
    closing): the same reading five polls in a row, 0.1 s apart."""
    readings: list[float] = []

    def settled() -> bool:
        readings.append(users_connected(base_url))
        return len(readings) >= 5 and len(set(readings[-5:])) == 1

    wait_for(settled, seconds, "webchannel_users_connected to settle", interval=0.1)
    return readings[-1]


async def gauge_equals(base_url: str, expected: float, seconds: float = 10) -> None:
    """Wait until ``webchannel_users_connected`` equals ``expected``."""
    await eventually(
        lambda: asyncio.to_thread(lambda: users_connected(base_url) == expected),
        seconds,
        f"webchannel_users_connected == {expected}",
    )


# --- processes -------------------------------------------------------------------------------


def wait_exit(server: ServerProcess, seconds: float) -> int:
    """Wait for a process expected to exit by itself; kill it (and fail) if it does not."""
    try:
        return server.wait_exit(seconds)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=timeout(5))
        raise AssertionError(f"process did not exit within {timeout(seconds):.1f}s:\n{server.output()}") from None


def non_empty_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def connection_refused(host: str, port: int) -> bool:
    """True if a TCP connection to ``host:port`` is refused (nothing listening)."""
    try:
        with socket.create_connection((host, port), timeout=timeout(2)):
            return False
    except ConnectionRefusedError:
        return True


# --- raw WebSocket client --------------------------------------------------------------------

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class RawWebSocket:
    """A minimal blocking WebSocket client on a plain socket: frames as they come off the wire."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    @classmethod
    def open(cls, base_url: str, channel_id: str, token: str, rcvbuf: int | None = None) -> RawWebSocket:
        """Connect to ``base_url`` (``http://host:port``) and complete the handshake (101 expected).

        ``rcvbuf`` sets SO_RCVBUF before connecting, so the kernel absorbs little for a reader
        that never reads.
        """
        address = urlsplit(base_url)
        family, kind, proto, _, peer = socket.getaddrinfo(address.hostname, address.port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.settimeout(timeout(10))
            sock.connect(peer)
            ws = cls(sock)
            path = f"{CHANNELS}/{quote(channel_id, safe='')}?access_token={quote(token, safe='')}"
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {address.netloc}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            sock.sendall(request.encode())
            while b"\r\n\r\n" not in ws.buffer:
                chunk = sock.recv(4096)
                if not chunk:
                    raise AssertionError(f"connection closed during the handshake: {ws.buffer!r}")
                ws.buffer += chunk
            head, ws.buffer = ws.buffer.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 101"), head
        except BaseException:
            sock.close()
            raise
        return ws

    def _read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buffer) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no complete frame in time")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the TCP connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_frame(self, seconds: float) -> tuple[int, bytes]:
        """The next frame's ``(opcode, payload)`` within ``timeout(seconds)``."""
        deadline = time.monotonic() + timeout(seconds)
        b0, b1 = self._read_exact(2, deadline)
        assert not b1 & 0x80, "server frames must not be masked"
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2, deadline))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8, deadline))
        return b0 & 0x0F, self._read_exact(length, deadline)

    def send_frame(self, opcode: int, payload: bytes) -> None:
        """A single, final, masked frame (clients must mask)."""
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", len(payload))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def read_until_close(self, seconds: float) -> tuple[list[bytes], int | None]:
        """Every data frame up to the server's close frame, and the code in it; answers pings and
        the close, as a client must. Each frame within ``timeout(seconds)``."""
        frames: list[bytes] = []
        while True:
            opcode, payload = self.read_frame(seconds)
            if opcode == OP_CLOSE:
                self.send_frame(OP_CLOSE, payload[:2])
                return frames, (struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None)
            if opcode == OP_PING:
                self.send_frame(OP_PONG, payload)
            else:
                assert opcode in (OP_BINARY, OP_TEXT), f"unexpected opcode {opcode}"
                frames.append(payload)

    def close(self) -> None:
        self.sock.close()


def raw_websocket_with_receive_buffer(base_url: str, channel_id: str, token: str, rcvbuf: int) -> RawWebSocket:
    """A raw subscriber whose socket has a small receive buffer (see :meth:`RawWebSocket.open`)."""
    return RawWebSocket.open(base_url, channel_id, token, rcvbuf=rcvbuf)


def read_until_connection_ends(sock: socket.socket, seconds: float) -> tuple[int, str]:
    """Read (and discard) from ``sock`` until the server ends the TCP connection (EOF or reset),
    within ``timeout(seconds)``; return ``(bytes read, "eof" or "reset")``."""
    deadline = time.monotonic() + timeout(seconds)
    total = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"the connection was still open after {timeout(seconds):.1f}s ({total} bytes read)")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            return total, "reset"
        except TimeoutError:
            continue
        if not chunk:
            return total, "eof"
        total += len(chunk)


# --- memory of a server process --------------------------------------------------------------


def proc_status_bytes(pid: int, field_name: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``...) in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field_name} in /proc/{pid}/status")


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (``VmRSS``), in bytes."""
    return proc_status_bytes(pid, "VmRSS")


class RssWatch:
    """Watches a process's resident memory while a test drives it.

    :meth:`start` takes the baseline (``VmRSS``) and samples ``VmRSS`` every ``interval`` seconds
    in a thread until :meth:`stop`. The peak is the largest sample, or the kernel's own high-water
    mark (``VmHWM``) when that rose during the watch (so a spike between samples counts too).
    """

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.baseline = 0
        self.samples: list[int] = []
        self.hwm_before = 0
        self.hwm_after = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RssWatch:
        self.hwm_before = proc_status_bytes(self.pid, "VmHWM")
        self.baseline = rss_bytes(self.pid)
        self.samples = [self.baseline]
        self._thread = threading.Thread(target=self._run, name="rss-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.samples.append(rss_bytes(self.pid))
            except (OSError, AssertionError):  # the process is gone: the test will say so
                return

    def stop(self) -> RssWatch:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout(5))
        self.samples.append(rss_bytes(self.pid))
        self.hwm_after = proc_status_bytes(self.pid, "VmHWM")
        return self

    @property
    def peak(self) -> int:
        peak = max(self.samples)
        if self.hwm_after > self.hwm_before:
            peak = max(peak, self.hwm_after)
        return peak

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def report(self, label: str) -> str:
        mib = 1024 * 1024
        return (
            f"[rss] {label}: baseline {self.baseline / mib:.1f} MiB, peak {self.peak / mib:.1f} MiB, "
            f"growth {self.growth / mib:.1f} MiB, last {self.samples[-1] / mib:.1f} MiB "
            f"({len(self.samples)} samples; VmHWM {self.hwm_before / mib:.1f} -> {self.hwm_after / mib:.1f} MiB)"
        )


def websocket_handshake(base_url: str, target: str, headers: dict[str, str] | None = None) -> int | None:
    """Send a WebSocket handshake for ``target`` (sent exactly as given) over a raw socket; return
    the HTTP status of the answer (101 when upgraded), or None if the server closed the connection
    without one. The socket is closed right after."""
    address = urlsplit(base_url)
    key = base64.b64encode(os.urandom(16)).decode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {address.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    answer = b""
    with socket.create_connection((address.hostname, address.port), timeout=timeout(10)) as sock:
        try:
            sock.sendall(request.encode("ascii"))
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
    if not answer.startswith(b"HTTP/1.1 ") or b"\r\n" not in answer:
        return None
    return int(answer.split(b"\r\n", 1)[0].split()[1])


# --- event streams -----------------------------------------------------------------------------

STREAM_OPENING = b": stream open\n\n"
"""The first bytes of every event stream."""


def open_event_stream(server: ServerProcess, channel_id: str, token: str, rcvbuf: int | None = None) -> socket.socket:
    """An event stream on a raw socket, read up to its opening comment (nothing further)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout(10))
    sock.connect((server.host, server.port))
    path = f"{CHANNELS}/{quote(channel_id, safe='')}/events?access_token={quote(token, safe='')}"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    head = b""
    while not head.endswith(STREAM_OPENING):
        chunk = sock.recv(1)  # byte by byte: nothing past the opening is read
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


# --- raw HTTP --------------------------------------------------------------------------------


@dataclasses.dataclass
class RawResponse:
    """An HTTP response read off a raw socket: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


def raw_http(
    server: ServerProcess,
    method: str | bytes,
    target: str,
    headers: dict[str, bytes] | None = None,
    body: bytes = b"",
) -> RawResponse:
    """One request on a connection of its own, written byte for byte as given (any method, any
    header value), with Host, ``Connection: close`` and a Content-Length added unless given;
    the server must answer it."""
    fields = {"host": f"{server.host}:{server.port}".encode(), "connection": b"close", **(headers or {})}
    if body or method in ("POST", b"POST"):
        fields.setdefault("content-length", str(len(body)).encode())
    verb = method if isinstance(method, bytes) else method.encode()
    head = verb + b" " + target.encode() + b" HTTP/1.1\r\n"
    head += b"".join(name.encode() + b": " + value + b"\r\n" for name, value in fields.items())
    answer = raw_request(server.url, head + b"\r\n" + body)
    assert answer is not None, f"{verb[:40]!r} {target}: the connection closed without an answer"
    return answer


def raw_request(base_url: str, request: bytes, seconds: float = 10) -> RawResponse | None:
    """Send ``request`` (bytes exactly as given, on a new connection) and read the answer's head
    and body (``Content-Length``, chunked, or up to the close; an event stream's head only).
    None if the server closed the connection without an answer."""
    address = urlsplit(base_url)
    deadline = time.monotonic() + timeout(seconds)
    data = b""
    with socket.create_connection((address.hostname, address.port), timeout=timeout(seconds)) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(request)
        while True:
            parsed = _parse_response(data)
            if parsed is not None:
                return parsed
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            except TimeoutError:
                raise AssertionError(f"no complete answer within {timeout(seconds):.1f}s: {data[:300]!r}") from None
            if not chunk:
                return _parse_response(data, closed=True)
            data += chunk


def read_response(sock: socket.socket, seconds: float = 10) -> RawResponse:
    """The next response on a (keep-alive) connection, head and body."""
    data = b""
    sock.settimeout(timeout(seconds))
    while (parsed := _parse_response(data)) is None:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a whole response: {data[:300]!r}"
        data += chunk
    return parsed


def _parse_response(data: bytes, closed: bool = False) -> RawResponse | None:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("content-type", "").startswith("text/event-stream") or status == 101:
        return RawResponse(status, headers, rest)
    if "content-length" in headers:
        length = int(headers["content-length"])
        return RawResponse(status, headers, rest[:length]) if len(rest) >= length or closed else None
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunked(rest)
        if body is None:  # incomplete: what came, as it came, if the connection ended there
            return RawResponse(status, headers, rest) if closed else None
        return RawResponse(status, headers, body)
    return RawResponse(status, headers, rest) if closed else None


def _dechunked(data: bytes) -> bytes | None:
    """The body of a complete chunked encoding, or None while it is incomplete."""
    body = b""
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            return None
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return body
        if len(data) < size + 2:
            return None
        body, data = body + data[:size], data[size + 2 :]
