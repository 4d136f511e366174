"""Slow and idle HTTP connections against a real server: a request head must be complete within
``server.request_head_timeout`` (a connection sending one header byte every 45 s used to stay
open for good), and ``server.max_http_connections`` caps the open HTTP connections that are not
subscribers, making room by closing an idle keep-alive one, else answering 503."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.common import assert_problem
from tests.e2e.helpers import (
    create_channel,
    metric_value,
    metrics_text,
    open_event_stream,
    raw_websocket_with_receive_buffer,
    read_response,
)
from tests.harness import ServerProcess, base_config, serving, timeout, wait_for

pytestmark = pytest.mark.slow  # servers of their own, waits of seconds

HEAD_TIMEOUT = 1.0
SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = base_config(server={"request_head_timeout": HEAD_TIMEOUT})
    with serving(tmp_path_factory.mktemp("head-timeout"), config) as server:
        yield server


def connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=timeout(10))


def closed_by_server(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (what it sends meanwhile is read)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def trickle_until_closed(sock: socket.socket, data: bytes, every: float, seconds: float) -> float:
    """Send ``data`` a byte at a time, the next one whenever ``every`` seconds pass without the
    server closing the connection; the seconds until it closed it (fails after ``seconds``)."""
    started = time.monotonic()
    for byte in data:
        if closed_by_server(sock, every):
            return time.monotonic() - started
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, "the connection was still open"
    raise AssertionError("every byte was sent and the connection is still open")


def closed_for(server: ServerProcess, reason: str) -> float:
    return metric_value(metrics_text(server.url), "webchannel_http_connections_closed_total", {"reason": reason}) or 0


# --- the request head timeout ----------------------------------------------------------------


def test_a_head_sent_one_byte_at_a_time_is_dropped_at_the_head_timeout(server: ServerProcess) -> None:
    before = closed_for(server, "request_head_timeout")
    with connect(server) as sock:
        elapsed = trickle_until_closed(sock, SLOW_HEAD, every=HEAD_TIMEOUT / 5, seconds=timeout(HEAD_TIMEOUT + 3))
    assert HEAD_TIMEOUT * 0.9 <= elapsed <= HEAD_TIMEOUT + timeout(1.5), elapsed
    assert closed_for(server, "request_head_timeout") == before + 1


def test_a_connection_that_sends_nothing_is_dropped_at_the_head_timeout(server: ServerProcess) -> None:
    with connect(server) as sock:
        started = time.monotonic()
        assert closed_by_server(sock, HEAD_TIMEOUT + timeout(1.5))
        assert time.monotonic() - started >= HEAD_TIMEOUT * 0.9


def test_a_keep_alive_connection_idles_past_the_head_timeout_and_times_its_next_head(server: ServerProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).status == 200
        assert not closed_by_server(sock, HEAD_TIMEOUT * 1.5)  # idle between requests is allowed longer
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).status == 200
        elapsed = trickle_until_closed(sock, SLOW_HEAD, every=HEAD_TIMEOUT / 5, seconds=timeout(HEAD_TIMEOUT + 3))
    assert HEAD_TIMEOUT * 0.9 <= elapsed <= HEAD_TIMEOUT + timeout(1.5), elapsed


def test_requests_with_timely_heads_are_served_as_before(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=timeout(10)) as client:
        for _ in range(20):
            assert client.get("/healthz").status_code == 200
        _, token = create_channel(server.url, "head-timeout-publish")
        response = client.post(
            "/webchannel/v1/channels/head-timeout-publish",
            content=b"x" * 100_000,
            headers={"authorization": f"Bearer {token}"},
        )
        assert response.status_code == 204


# --- the connection cap ----------------------------------------------------------------------

CAP = 3


@pytest.fixture
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = base_config(server={"max_http_connections": CAP})
    with serving(tmp_path_factory.mktemp("capped"), config) as server:
        yield server


def busy(server: ServerProcess) -> socket.socket:
    """A connection whose request head has begun (it is not idle)."""
    sock = connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    return sock


def test_at_the_cap_an_idle_connection_makes_room_else_the_newcomer_gets_503(capped: ServerProcess) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(CAP - 1):
            stack.enter_context(busy(capped))
        idle = stack.enter_context(connect(capped))
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(idle).status == 200
        # The cap is reached; a newcomer closes the idle keep-alive connection and is served.
        response = httpx.get(f"{capped.url}/healthz", headers={"connection": "close"}, timeout=timeout(10))
        assert response.status_code == 200
        assert closed_by_server(idle, timeout(5))
        # Now every counted connection is busy: the next one is refused.
        filler = stack.enter_context(busy(capped))
        refused = httpx.get(f"{capped.url}/healthz", timeout=timeout(10))
        assert_problem(refused, 503)
        assert int(refused.headers["retry-after"]) > 0
        filler.close()  # room again
        wait_for(lambda: httpx.get(f"{capped.url}/healthz", timeout=timeout(10)).status_code == 200, 5, "room")
    text = metrics_text(capped.url)
    assert metric_value(text, "webchannel_http_connections_closed_total", {"reason": "evicted_idle"}) == 1
    assert (
        metric_value(text, "webchannel_http_connections_closed_total", {"reason": "max_http_connections"}) or 0
    ) >= 1


def test_subscribers_do_not_count_toward_the_cap(capped: ServerProcess) -> None:
    channel_id, token = create_channel(capped.url, "capped-subscribers")
    with contextlib.ExitStack() as stack:
        for _ in range(CAP + 1):
            socket_ = raw_websocket_with_receive_buffer(capped.url, channel_id, token, 65536)
            stack.callback(socket_.close)
            stack.enter_context(open_event_stream(capped, channel_id, token))
        # 2 x (CAP + 1) subscribers and no counted connection: every HTTP connection fits.
        for _ in range(CAP):
            stack.enter_context(busy(capped))
        refused = httpx.get(f"{capped.url}/healthz", timeout=timeout(10))
        assert_problem(refused, 503)
