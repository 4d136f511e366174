"""The load generator's clients: raw asyncio protocols for HTTP publishing and WebSocket subscribing.

Why not a library: per message, a library client allocates message objects, goes through a
queue and wakes a coroutine. Here a publish is one ``write`` and one parsed response, and a
delivery is parsed inside ``data_received`` and handed to a plain callback. Against Nchan on
one core each, 16 publishers and one subscriber reached about 25,000 messages/s with these
protocols on uvloop, 8,700/s with aiohttp's client (C-accelerated WebSocket reader) and
6,700/s with the ``websockets`` library; the ``relay`` target shows the generator's ceiling
on the machine at hand. Only what a benchmark needs is implemented:
HTTP/1.1 keep-alive with ``Content-Length`` or chunked responses; RFC 6455 client framing
with fragmentation, ping/pong and close codes; no extensions (no compression is offered).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

from .payload import now_ns

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OnMessage = Callable[[bytes, int], None]


class ClientError(Exception):
    """A connection, handshake or protocol failure of a benchmark client."""


@dataclass(frozen=True)
class Endpoint:
    """Where a client connects: host, port, TLS, the request target and extra request headers."""

    host: str
    port: int
    tls: bool
    target: str
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_url(cls, url: str, headers: dict[str, str] | None = None) -> Endpoint:
        parts = urlsplit(url)
        tls = parts.scheme in ("https", "wss")
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if tls else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(host, port, tls, target, dict(headers or {}))

    @property
    def host_header(self) -> str:
        default = 443 if self.tls else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context() if self.tls else None


# --- HTTP publisher ---------------------------------------------------------------------------


NextBody = Callable[[int], bytes | None]
"""Called with the status of the previous publish (0 before the first); the next body, or None to stop."""


class _HttpProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection with one request in flight at a time.

    Either one request whose status resolves ``waiter``, or a chain: each response's status
    goes to ``next_body`` and its answer is written at once, inside ``data_received``, so a
    publisher that publishes back to back costs no coroutine wake-up per message and the
    server gets its next request without waiting for the generator's other work.
    A once-a-second check fails a request that waits past its deadline (a timer per request,
    as ``asyncio.wait_for`` makes, would cost more than the request's parsing).
    """

    def __init__(self, head: bytes) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.next_body: NextBody | None = None
        self.leftover: bytes | None = None
        self.head = head
        self.timeout = 10.0
        self.deadline = 0.0
        self.closed = False
        self.keep_alive = True
        self._buffer = bytearray()
        self._loop = asyncio.get_running_loop()
        self._watchdog = self._loop.call_later(1, self._check)

    def send(self, body: bytes, timeout: float, next_body: NextBody | None = None) -> asyncio.Future[int]:
        """POST ``body``; the future gets the status of the last response (of the chain, if any)."""
        self.waiter = self._loop.create_future()
        self.next_body, self.leftover, self.timeout = next_body, None, timeout
        self._write(body)
        return self.waiter

    def _write(self, body: bytes) -> None:
        assert self.transport is not None
        self.deadline = self._loop.time() + self.timeout
        self.transport.write(self.head + b"%d\r\n\r\n" % len(body) + body)

    def _check(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done() and self._loop.time() > self.deadline:
            waiter.set_exception(ClientError(f"no answer within {self.timeout:.0f}s"))
            if self.transport is not None:
                self.transport.abort()
        if not self.closed:
            self._watchdog = self._loop.call_later(1, self._check)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._watchdog.cancel()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ClientError(f"connection lost: {exc or 'closed by server'}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while self._buffer:
            parsed = _parse_response(self._buffer)
            if parsed is None:
                return
            status, consumed, self.keep_alive = parsed
            del self._buffer[:consumed]
            waiter = self.waiter
            if waiter is None or waiter.done():
                continue
            if self.next_body is not None:
                body = self.next_body(status)
                if body is not None and self.keep_alive:
                    self._write(body)
                    continue
                self.leftover, self.next_body = body, None  # a body left over: go on on a new connection
            waiter.set_result(status)


def _parse_response(buffer: bytearray) -> tuple[int, int, bool] | None:
    """``(status, bytes consumed, keep-alive)`` of the first complete response, or None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    keep_alive = b"\r\nconnection: close" not in head
    start = end + 4
    index = head.find(b"\r\ncontent-length:")
    if index >= 0:
        line_end = head.find(b"\r\n", index + 2)
        length = int(head[index + 17 : line_end if line_end >= 0 else len(head)])
        if len(buffer) < start + length:
            return None
        return status, start + length, keep_alive
    if b"\r\ntransfer-encoding: chunked" in head:
        position = start
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
            position = line_end + 2 + size + 2
            if len(buffer) < position:
                return None
            if size == 0:
                return status, position, keep_alive
    return status, start, keep_alive  # 204, 304 and the like: no body


class Publisher:
    """A keep-alive HTTP connection that POSTs messages, reconnecting when the server closed it."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        head = [f"POST {endpoint.target} HTTP/1.1", f"Host: {endpoint.host_header}"]
        head += [f"{name}: {value}" for name, value in endpoint.headers.items()]
        head.append("Content-Type: application/octet-stream")
        self._head = ("\r\n".join(head) + "\r\nContent-Length: ").encode("latin-1")
        self._protocol: _HttpProtocol | None = None

    async def _connection(self, timeout: float) -> _HttpProtocol:
        """The open connection, or a new one when there is none or the server closed it."""
        current = self._protocol
        if current is not None and not current.closed and current.keep_alive:
            return current
        self.close()
        endpoint = self.endpoint
        context = endpoint.ssl_context()
        try:
            _, protocol = await asyncio.wait_for(
                asyncio.get_running_loop().create_connection(
                    lambda: _HttpProtocol(self._head),
                    endpoint.host,
                    endpoint.port,
                    ssl=context,
                    server_hostname=endpoint.host if context else None,
                ),
                timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise ClientError(f"cannot connect: {exc!r}") from exc
        self._protocol = protocol
        return protocol

    async def publish(self, body: bytes, timeout: float = 10) -> int:
        """POST ``body``; its HTTP status. Raises :class:`ClientError` when no answer came in time."""
        protocol = await self._connection(timeout)
        return await protocol.send(body, timeout)

    async def publish_all(self, next_body: NextBody, timeout: float = 10) -> None:
        """Publish back to back, each body sent as soon as the previous one is answered.

        ``next_body(status)`` gets each answer's status (0 before the first) and gives the next
        body, or None to stop. Raises :class:`ClientError` when a publish got no answer; the
        caller may call again to go on (``next_body(0)`` then gives the body after it).
        """
        body = next_body(0)
        while body is not None:
            protocol = await self._connection(timeout)
            await protocol.send(body, timeout, next_body)
            body = protocol.leftover

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None


async def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10) -> tuple[int, bytes]:
    """One-off HTTP POST (channel creation): status and body."""
    endpoint = Endpoint.from_url(url, headers)
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            endpoint.host,
            endpoint.port,
            ssl=endpoint.ssl_context(),
            server_hostname=endpoint.host if endpoint.tls else None,
        ),
        timeout,
    )
    try:
        head = [f"POST {endpoint.target} HTTP/1.1", f"Host: {endpoint.host_header}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in endpoint.headers.items()]
        head.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        response = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head_bytes, _, rest = response.partition(b"\r\n\r\n")
    if b"\r\ntransfer-encoding: chunked" in head_bytes.lower():
        chunks, rest_view = [], rest
        while rest_view:
            size_line, _, rest_view = rest_view.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            chunks.append(rest_view[:size])
            rest_view = rest_view[size + 2 :]
        rest = b"".join(chunks)
    return int(head_bytes[9:12]), rest


# --- WebSocket subscriber ---------------------------------------------------------------------


class Subscriber(asyncio.Protocol):
    """A receive-only WebSocket client: every complete data message goes to ``on_message``.

    ``on_message(payload, arrival_ns)`` runs inside ``data_received``; frames that arrived in
    the same read share one arrival time (they did arrive together). ``binary`` counts data
    messages sent as binary frames, ``text`` those sent as text frames (webchannel sends binary).
    """

    def __init__(self, endpoint: Endpoint, on_message: OnMessage | None) -> None:
        self.endpoint = endpoint
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.key = base64.b64encode(os.urandom(16))
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None
        self.binary = 0
        self.text = 0
        self._upgraded = False
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        endpoint = self.endpoint
        head = [
            f"GET {endpoint.target} HTTP/1.1",
            f"Host: {endpoint.host_header}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.key.decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        head += [f"{name}: {value}" for name, value in endpoint.headers.items()]
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ClientError(f"connection lost during the handshake: {exc or 'closed'}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        arrived = now_ns()
        buffer = self._buffer
        buffer += data
        if not self._upgraded and not self._handshake():
            return
        position, size = 0, len(buffer)
        while size - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            length = second & 0x7F
            start = position + 2
            if length == 126:
                if size - position < 4:
                    break
                length = int.from_bytes(buffer[start : start + 2], "big")
                start += 2
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(buffer[start : start + 8], "big")
                start += 8
            if second & 0x80:  # a masked frame from a server is a protocol error
                self._fail(1002)
                return
            end = start + length
            if end > size:
                break
            self._frame(first, bytes(buffer[start:end]), arrived)
            position = end
        if position:
            del buffer[:position]

    # frames

    def _frame(self, first: int, payload: bytes, arrived: int) -> None:
        opcode = first & 0x0F
        if opcode & 0x08:
            self._control(opcode, payload)
            return
        fin = first & 0x80
        if opcode == 0:  # continuation
            self._fragments.append(payload)
            if not fin:
                return
            opcode, payload = self._fragment_opcode, b"".join(self._fragments)
            self._fragments = []
        elif not fin:
            self._fragment_opcode, self._fragments = opcode, [payload]
            return
        if opcode == 2:
            self.binary += 1
        else:
            self.text += 1
        if self.on_message is not None:
            self.on_message(payload, arrived)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:  # ping: answer with the same payload
            self._send(0xA, payload)
        elif opcode == 0x8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self._send(0x8, payload[:2])
            if self.transport is not None:
                self.transport.close()

    def _send(self, opcode: int, payload: bytes) -> None:
        """A masked frame from the client (only control frames here, so ≤ 125 bytes)."""
        if self.transport is None or self.transport.is_closing():
            return
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.transport.write(bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked)

    def _handshake(self) -> bool:
        """Parse the 101 answer; True once upgraded (the rest of the buffer is frames)."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(buffer[:end])
        del buffer[: end + 4]
        status = int(head[9:12]) if len(head) >= 12 and head[9:12].isdigit() else 0
        accept = base64.b64encode(hashlib.sha1(self.key + WS_GUID, usedforsecurity=False).digest())
        if status != 101 or accept not in head:
            if not self.opened.done():
                self.opened.set_exception(ClientError(f"handshake refused: HTTP {status or head[:40]!r}"))
            if self.transport is not None:
                self.transport.close()
            return False
        self._upgraded = True
        if not self.opened.done():
            self.opened.set_result(None)
        return True

    def _fail(self, code: int) -> None:
        self.close_code = self.close_code or code
        if self.transport is not None:
            self.transport.abort()

    # API

    @property
    def is_open(self) -> bool:
        return self._upgraded and not self.closed.done()

    async def close(self, timeout: float = 2) -> None:
        """Close politely (1000) and wait a bounded time for the server; abort after that."""
        if self.transport is None or self.closed.done():
            return
        self._send(0x8, (1000).to_bytes(2, "big"))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        except TimeoutError:
            self.transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


async def subscribe(endpoint: Endpoint, on_message: OnMessage | None, timeout: float = 10) -> Subscriber:
    """Open a WebSocket to ``endpoint``; raises :class:`ClientError` when refused or too slow."""
    loop = asyncio.get_running_loop()
    context = endpoint.ssl_context()
    try:
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                lambda: Subscriber(endpoint, on_message),
                endpoint.host,
                endpoint.port,
                ssl=context,
                server_hostname=endpoint.host if context else None,
            ),
            timeout,
        )
    except (OSError, TimeoutError) as exc:
        raise ClientError(f"cannot connect: {exc!r}") from exc
    try:
        await asyncio.wait_for(asyncio.shield(protocol.opened), timeout)
    except TimeoutError:
        protocol.abort()
        raise ClientError(f"no handshake answer within {timeout:.0f}s") from None
    except ClientError:
        protocol.abort()
        raise
    return protocol
