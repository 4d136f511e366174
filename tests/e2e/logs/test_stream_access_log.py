"""Every event stream gets its one access-log line when it ends, whoever ends it: the client, the
channel's close, the server cutting off a reader too slow, or a drain. Daphne logs an HTTP
request only when the application completes its response, which a stream the client leaves
never does."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.common import API_KEY
from tests.e2e.helpers import CHANNELS, STREAM_OPENING, channel_url, create_channel, open_event_stream, wait_exit
from tests.harness import ServerProcess, base_config, serving, timeout, wait_for

OPENING = STREAM_OPENING
KIB = 1024


_STREAM_LINE = re.compile(r'"GET (\S+)/events\?access_token=\[redacted\]" (\d+) (\d+) ([\d.]+)ms$')


def stream_lines(server: ServerProcess, channel_id: str) -> list[tuple[int, int, float]]:
    """``(status, bytes, milliseconds)`` of each access-log line of an event stream of ``channel_id``."""
    found = []
    for line in server.output().splitlines():
        match = _STREAM_LINE.search(line)
        if match and match.group(1) == f"{CHANNELS}/{quote(channel_id, safe='')}":
            found.append((int(match.group(2)), int(match.group(3)), float(match.group(4))))
    return found


def one_stream_line(server: ServerProcess, channel_id: str) -> tuple[int, int, float]:
    """The one access-log line of the stream of ``channel_id``, waited for; never a second one."""
    wait_for(lambda: stream_lines(server, channel_id), 10, f"the access-log line of {channel_id}'s stream")
    # A second line would be written at the same moment as the first, by the same end.
    with httpx.Client(timeout=timeout(10)) as client:
        assert client.get(f"{server.url}/healthz").status_code == 200
    lines = stream_lines(server, channel_id)
    assert len(lines) == 1, lines
    return lines[0]


def publish(server: ServerProcess, channel_id: str, data: bytes) -> None:
    response = httpx.post(channel_url(server.url, channel_id), content=data, headers={"x-api-key": API_KEY})
    assert response.status_code == 204, response.text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = base_config(server={"max_backlog_bytes": 64 * KIB}, channel={"max_message_size": 64 * KIB})
    with serving(tmp_path_factory.mktemp("streams"), config) as server:
        yield server


def test_a_stream_the_client_ends_gets_its_line(server: ServerProcess) -> None:
    channel_id, token = create_channel(server.url, "stream-client-ends")
    started = time.monotonic()
    sock = open_event_stream(server, channel_id, token)
    try:
        publish(server, channel_id, b"hello")
        event = b"data: hello\n\n"
        received = b""
        while event not in received:  # in its chunk of the chunked encoding
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
    finally:
        sock.close()
    held_ms = (time.monotonic() - started) * 1000
    status, size, ms = one_stream_line(server, channel_id)
    assert (status, size) == (200, len(OPENING) + len(event))
    assert 0 < ms <= held_ms + 1000


def test_a_stream_ended_by_closing_its_channel_gets_one_line(server: ServerProcess) -> None:
    channel_id, token = create_channel(server.url, "stream-channel-closed")
    sock = open_event_stream(server, channel_id, token)
    try:
        response = httpx.request("DELETE", channel_url(server.url, channel_id), headers={"x-api-key": API_KEY})
        assert response.status_code == 204
        status, size, _ = one_stream_line(server, channel_id)
        assert (status, size) == (200, len(OPENING))
    finally:
        sock.close()


def test_a_stream_cut_off_as_too_slow_gets_one_line(server: ServerProcess) -> None:
    channel_id, token = create_channel(server.url, "stream-too-slow")
    sock = open_event_stream(server, channel_id, token, rcvbuf=4096)
    try:
        message = bytes(range(256)) * 200  # 50 KiB binary: 68 KiB of base64 per event
        for _ in range(40):  # far past the 64 KiB the reader may leave unread
            publish(server, channel_id, message)
            if stream_lines(server, channel_id):
                break
        status, size, _ = one_stream_line(server, channel_id)
        assert status == 200
        assert size >= len(OPENING)
    finally:
        sock.close()


@pytest.mark.slow
def test_streams_ended_by_a_drain_get_one_line_each(tmp_path: Path) -> None:
    with serving(tmp_path, base_config(server={"drain_window": 0.5}), name="drain") as server:
        streams = {}
        for n in range(3):
            channel_id, token = create_channel(server.url, f"stream-drained-{n}")
            streams[channel_id] = open_event_stream(server, channel_id, token)
        try:
            server.signal(signal.SIGTERM)
            assert wait_exit(server, 10) == 0
        finally:
            for sock in streams.values():
                sock.close()
        for channel_id in streams:
            assert stream_lines(server, channel_id) == [(200, len(OPENING), pytest.approx(0, abs=5000))]
