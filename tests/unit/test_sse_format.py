"""The event-stream form of a payload, read back the way EventSource reads it.

:func:`parse_event_stream` follows the HTML standard's event-stream interpretation (lines end
at ``\\r\\n``, ``\\r`` or ``\\n``; ``data`` fields joined with ``\\n``; one leading space of a
value dropped; an event with an empty data buffer is not dispatched). The end-to-end tests
use it as well.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

import pytest

from channels_api.framing import Encodings, event_bytes
from channels_api.routes import route_of
from channels_api.sse import KEEPALIVE, OPENING, _is_events_path

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass
class ParsedStream:
    events: list[tuple[str, str]] = field(default_factory=list)
    """(event type, data) of every dispatched event, in order."""
    comments: list[str] = field(default_factory=list)
    rest: str = ""
    """An incomplete last line, waiting for more text."""
    data: str = ""
    kind: str = ""


def parse_event_stream(text: str, parsed: ParsedStream | None = None) -> ParsedStream:
    """Feed ``text`` (decoded UTF-8) to an event-stream parser; returns its state."""
    parsed = parsed or ParsedStream()
    buffer, held = parsed.rest + text, ""
    if buffer.endswith("\r"):  # maybe the first half of "\r\n": decide with the next text
        buffer, held = buffer[:-1], "\r"
    lines = _LINE_END.split(buffer)
    parsed.rest = lines.pop() + held
    for line in lines:
        if line == "":
            if parsed.data:
                data = parsed.data[:-1] if parsed.data.endswith("\n") else parsed.data
                parsed.events.append((parsed.kind or "message", data))
            parsed.data, parsed.kind = "", ""
            continue
        if line.startswith(":"):
            parsed.comments.append(line[1:].strip())
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            parsed.data += value + "\n"
        elif name == "event":
            parsed.kind = value
    return parsed


def received(data: bytes) -> tuple[str, bytes]:
    """What an EventSource page gets for one published payload: the event type and the bytes."""
    stream = parse_event_stream(event_bytes(data).decode("utf-8"))
    assert len(stream.events) == 1, stream
    kind, text = stream.events[0]
    return kind, base64.b64decode(text, validate=True) if kind == "binary" else text.encode("utf-8")


TEXT_PAYLOADS = [
    b"hello",
    b"",
    b"\n",
    b"\n\n",
    b"a\nb",
    b"a\n\nb\n",
    b" leading space",
    b"  two",
    b"data: inside",
    b": looks like a comment",
    b"event: binary",
    "t\u00e9st \U0001f680".encode(),
    b"\x00nul",
    b'{"json": [1, 2]}\n',
]
BINARY_PAYLOADS = [b"\xff\xfe", b"\x80", b"a\r\nb", b"\r", b"x\ry", b"\xed\xa0\x80", bytes(range(256))]


@pytest.mark.parametrize("data", TEXT_PAYLOADS)
def test_a_utf8_payload_without_carriage_returns_is_a_message_event_read_back_exactly(data):
    assert received(data) == ("message", data)


@pytest.mark.parametrize("data", BINARY_PAYLOADS)
def test_other_payloads_are_binary_events_whose_base64_is_the_exact_bytes(data):
    assert received(data) == ("binary", data)


def test_wire_format():
    assert event_bytes(b"one") == b"data: one\n\n"
    assert event_bytes(b"a\nb\n") == b"data: a\ndata: b\ndata: \n\n"
    assert event_bytes(b"") == b"data: \n\n"
    assert event_bytes(b"\xff") == b"event: binary\ndata: /w==\n\n"
    assert event_bytes(b"a\r\nb") == b"event: binary\ndata: " + base64.b64encode(b"a\r\nb") + b"\n\n"


def test_opening_and_keepalive_are_comments_that_dispatch_nothing():
    stream = parse_event_stream((OPENING + KEEPALIVE + event_bytes(b"x")).decode())
    assert stream.comments == ["stream open", "keepalive"]
    assert stream.events == [("message", "x")]


def test_events_are_formatted_once_per_message():
    encodings = Encodings()
    data = b"shared payload"
    assert encodings.event(data) is encodings.event(data)
    assert encodings.event(b"\xff") == event_bytes(b"\xff")
    assert encodings.event(b"x", "e-1") == b"id: e-1\ndata: x\n\n"


def test_a_channels_events_path_is_routed_to_the_stream_and_an_encoded_slash_is_not():
    assert route_of("/webchannel/v1/channels/abc/events").name == "channel_events"  # type: ignore[union-attr]
    assert route_of("/webchannel/v1/channels/abc").name == "publish"  # type: ignore[union-attr]
    assert route_of("/webchannel/v1/channels/abc/other").name == "publish"  # type: ignore[union-attr]
    assert _is_events_path(b"/webchannel/v1/channels/t%C3%A9/events")
    assert _is_events_path(b"/webchannel/v1/channels/abc/events?access_token=x")
    # An encoded slash is part of the id (an invalid one, answered by the channel's route), not a separator.
    assert not _is_events_path(b"/webchannel/v1/channels/x%2Fevents")
