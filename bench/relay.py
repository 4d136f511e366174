"""A do-nothing pub/sub relay, to measure what the load generator itself can drive.

``python -m bench.relay PORT`` serves ``POST /pub/<id>`` (the body goes out as one binary
frame to every subscriber of ``<id>``, then 204) and WebSocket ``GET /sub/<id>``, on
127.0.0.1, with no authentication, checks or limits. It does per message almost nothing
but the system calls, so run on the server's core it shows the generator's ceiling: a
server whose figure comes close to the relay's was measured at the generator's limit,
not its own. (It is Python too, so its figures are a floor of that ceiling; the CPU
columns of the results say which side was busy.)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
from typing import cast

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

channels: dict[bytes, set[asyncio.Transport]] = {}


def header(head: bytes, lower: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (lower case) in a request head, with its original case."""
    index = lower.find(b"\r\n" + name + b":")
    if index < 0:
        return None
    start = index + len(name) + 3
    end = lower.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


def frame(payload: bytes) -> bytes:
    """An unmasked binary frame (server to client)."""
    size = len(payload)
    if size < 126:
        return bytes((0x82, size)) + payload
    if size < 1 << 16:
        return bytes((0x82, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x82, 127)) + size.to_bytes(8, "big") + payload


class Connection(asyncio.Protocol):
    """A publisher (keep-alive POSTs) or, once upgraded, a subscriber."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.channel: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.channel is not None and self.transport is not None:
            channels.get(self.channel, set()).discard(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.channel is not None:
            self._from_subscriber(data)
            return
        buffer = self.buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end])
            lower = head.lower()
            length = int(header(head, lower, b"content-length") or 0)
            if len(buffer) < end + 4 + length:
                return
            body = bytes(buffer[end + 4 : end + 4 + length])
            del buffer[: end + 4 + length]
            if not self._request(head, lower, body):
                return

    def _request(self, head: bytes, lower: bytes, body: bytes) -> bool:
        assert self.transport is not None
        method, _, rest = head.partition(b" ")
        path = rest.partition(b" ")[0]
        if method == b"POST" and path.startswith(b"/pub/"):
            data = frame(body)
            for subscriber in channels.get(path[5:], ()):
                subscriber.write(data)
            self.transport.write(NO_CONTENT)
            return True
        if method == b"GET" and path.startswith(b"/sub/") and b"\r\nupgrade: websocket" in lower:
            key = header(head, lower, b"sec-websocket-key") or b""
            accept = base64.b64encode(hashlib.sha1(key + WS_GUID, usedforsecurity=False).digest())
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            self.channel = path[5:]
            channels.setdefault(self.channel, set()).add(self.transport)
            return False
        self.transport.write(BAD_REQUEST)
        self.transport.close()
        return False

    def _from_subscriber(self, data: bytes) -> None:
        """Subscribers only send control frames; a close frame is answered and ends the socket."""
        assert self.transport is not None
        if data and data[0] & 0x0F == 0x8:
            self.transport.write(b"\x88\x02\x03\xe8")
            self.transport.close()


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Connection, "127.0.0.1", port, backlog=4096)
    print(f"relay listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    port = int(sys.argv[1])
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(port))
    else:
        uvloop.run(serve(port))


if __name__ == "__main__":
    main()
