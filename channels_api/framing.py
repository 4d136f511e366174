"""How a message looks on the wire, for each transport, with no I/O in sight.

- WebSocket: the header of an unmasked, final frame (a server's frames are never masked), for
  binary (opcode 2) and text (opcode 1) payloads;
- Server-Sent Events: one event per message. A payload that is valid UTF-8 and holds no carriage
  return is a plain event, one ``data:`` line per ``\\n``-separated line, which EventSource joins
  back with ``\\n`` into exactly the published text; any other payload is ``event: binary`` with
  its bytes in base64 on one ``data:`` line (EventSource treats ``\\r\\n``, ``\\r`` and ``\\n`` all
  as line ends, so a payload holding ``\\r`` could not come back byte for byte as text).

A fan-out hands the same payload object to every subscriber in turn, so :class:`Encodings`
keeps the encodings of the message relayed last: each message is framed (and copied, and
decoded) once per kind, not once per subscriber. One instance serves every transport of a process.
"""

from __future__ import annotations

import base64
import struct

BINARY = 0x82
"""First byte of a final binary frame."""
TEXT = 0x81
"""First byte of a final text frame."""


def frame_head(size: int, first: int = BINARY) -> bytes:
    """The header of an unmasked, final frame of ``size`` payload bytes."""
    if size < 126:
        return bytes((first, size))
    if size < 65536:
        return struct.pack("!BBH", first, 126, size)
    return struct.pack("!BBQ", first, 127, size)


def utf8(data: bytes) -> str | None:
    """``data`` decoded if it is valid UTF-8, else None."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def event_bytes(data: bytes, event_id: str | None = None) -> bytes:
    """One published payload as one Server-Sent Event (see the module docstring for the two
    forms), with an ``id:`` line when ``event_id`` is given."""
    head = b"id: " + event_id.encode("ascii") + b"\n" if event_id is not None else b""
    if b"\r" not in data and utf8(data) is not None:
        return head + b"".join([b"data: " + line + b"\n" for line in data.split(b"\n")]) + b"\n"
    return head + b"event: binary\ndata: " + base64.b64encode(data) + b"\n\n"


def comment(text: str) -> bytes:
    """A Server-Sent Events comment line (ignored by EventSource; keeps proxies from timing out)."""
    return b": " + text.encode("ascii") + b"\n\n"


def named_event(name: str, data: str) -> bytes:
    """A Server-Sent Event of type ``name`` with one line of ``data``."""
    return f"event: {name}\ndata: {data}\n\n".encode()


class Encodings:
    """The encodings of the message relayed last, computed on first use and kept until the next one.

    Keyed on the payload object's identity: every subscriber of a fan-out is handed the same
    ``bytes`` object, and a new message is a new object.
    """

    __slots__ = ("_binary", "_data", "_event", "_event_id", "_text", "_text_frame", "_text_known")

    def __init__(self) -> None:
        self._forget(b"")

    def _forget(self, data: bytes) -> None:
        self._data = data
        self._binary: bytes | None = None
        self._text: str | None = None
        self._text_known = False
        self._text_frame: bytes | None = None
        self._event: bytes | None = None
        self._event_id: str | None = None

    def _for(self, data: bytes) -> None:
        if data is not self._data:
            self._forget(data)

    def binary_frame(self, data: bytes) -> bytes:
        """``data`` as one binary frame, header and payload."""
        self._for(data)
        if self._binary is None:
            self._binary = frame_head(len(data)) + data
        return self._binary

    def text(self, data: bytes) -> str | None:
        """``data`` decoded if it is valid UTF-8, else None."""
        self._for(data)
        if not self._text_known:
            self._text, self._text_known = utf8(data), True
        return self._text

    def text_frame(self, data: bytes) -> bytes | None:
        """``data`` as one text frame if it is valid UTF-8 (the same bytes on the wire), else None."""
        if self.text(data) is None:
            return None
        if self._text_frame is None:
            self._text_frame = frame_head(len(data), TEXT) + data
        return self._text_frame

    def event(self, data: bytes, event_id: str | None = None) -> bytes:
        """``data`` as one Server-Sent Event (with ``id: event_id`` when given)."""
        self._for(data)
        if self._event is None or self._event_id != event_id:
            self._event, self._event_id = event_bytes(data, event_id), event_id
        return self._event
