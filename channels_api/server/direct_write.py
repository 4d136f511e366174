"""Writes that go to the socket at once when nothing is queued, instead of through Twisted's buffer.

A Twisted TCP transport buffers every write and sends it on the next writable event: two
selector updates and one more turn of the event loop per frame or handshake answer. When
its buffer is empty, sending right away is the same thing, sooner and cheaper;
whatever the socket does not take (it would block) goes into Twisted's buffer as before,
so order and flow control are Twisted's. TLS and other transports always take Twisted's way.

Relies on these internals (verified by :mod:`channels_api.fence`; ``INTERNALS`` below):
Twisted ``twisted.internet.tcp.Server``: ``socket``, ``_tempDataLen``, ``dataBuffer`` and
``offset`` (the buffer's unsent part), read to tell whether anything is queued.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

INTERNALS = (
    ("twisted", "twisted.internet", "tcp"),
    ("twisted", "twisted.internet.tcp", "Server"),
    ("twisted", "twisted.internet.tcp.Server", "socket", "__init__"),
    ("twisted", "twisted.internet.tcp.Server", "_tempDataLen", "__init__"),
    ("twisted", "twisted.internet.tcp.Server", "dataBuffer"),
    ("twisted", "twisted.internet.tcp.Server", "offset"),
)


MAX_PARTS = 512
"""More buffers than this (the system's limit is 1024) take Twisted's way."""
JOIN_BYTES = 16 * 1024
"""Parts up to this size in all are joined and sent as one buffer."""


def sendable(transport: Any) -> bool:
    """A plain TCP socket, open, with nothing queued in Twisted's buffer: it may be written to now."""
    return bool(
        type(transport) is tcp.Server
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
        and transport.connected
        and not transport.disconnecting
    )


def write_now(transport: Any, data: bytes) -> None:
    """``transport.write(data)``, sent at once when nothing is queued."""
    if not sendable(transport):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except OSError:  # would block, or the peer is gone: Twisted's path handles both
        sent = 0
    if sent < len(data):
        transport.write(data[sent:] if sent else data)


def write_parts_now(transport: Any, parts: list[bytes]) -> None:
    """``transport.writeSequence(parts)``, sent at once (one system call) when nothing is queued.

    Small parts are joined first (cheaper than the system's gather write from Python);
    large ones are gathered, so a big payload is not copied once more.
    """
    if not sendable(transport) or len(parts) > MAX_PARTS:
        transport.writeSequence(parts)
        return
    size = sum(len(part) for part in parts)
    if size <= JOIN_BYTES:
        write_now(transport, b"".join(parts))
        return
    try:
        sent = transport.socket.sendmsg(parts)
    except OSError:
        sent = 0
    if sent < size:
        transport.write(b"".join(parts)[sent:])
