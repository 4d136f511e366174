"""The HTTP channel's deadlines and the factory's connection cap, on virtual time.

Each connection is a :class:`WebchannelHTTPChannel` on an in-memory transport whose timeouts
run on a :class:`twisted.internet.task.Clock`; its requests are answered at once (204) by a
bare Twisted request, so only the channel and the factory are under test. The same behaviour
against a real server is in ``tests/e2e/hostile/test_connections.py``.
"""

from __future__ import annotations

import daphne.server  # noqa: F401  (first: it installs the asyncio reactor the server modules expect)
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web import http

from channels_api.config import ServerConfig
from channels_api.server.http_protocol import (
    IDLE_TIMEOUT_SECONDS,
    Phase,
    WebchannelHTTPChannel,
    WebchannelHTTPFactory,
)

HEAD_TIMEOUT = 10.0
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


class Transport(StringTransport):
    """A transport that records a half close and an abort, and, like a TCP transport, lets a
    producer be unregistered twice."""

    write_closed = False
    aborted = False

    def loseWriteConnection(self) -> None:
        self.write_closed = True

    def abortConnection(self) -> None:
        self.aborted = True

    def unregisterProducer(self) -> None:
        self.producer = None


class Answered(http.Request):
    """Answers every request at once with 204."""

    def process(self) -> None:
        self.setResponseCode(204)
        self.finish()


class Server:
    """What Daphne's factory keeps of its server: nothing the channel uses."""


class Connections:
    """A factory and a virtual clock; :meth:`open` makes connections to it."""

    def __init__(self, max_http_connections: int = 100) -> None:
        limits = ServerConfig(request_head_timeout=HEAD_TIMEOUT, max_http_connections=max_http_connections)
        self.factory = WebchannelHTTPFactory(Server(), limits)
        self.clock = Clock()

    def open(self) -> tuple[WebchannelHTTPChannel, Transport]:
        channel = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
        channel.requestFactory = Answered
        channel.callLater = self.clock.callLater  # the TimeoutMixin's timer, on virtual time
        transport = Transport()
        channel.makeConnection(transport)
        return channel, transport


def closing(transport: Transport) -> bool:
    return bool(transport.disconnecting)


def answered(transport: Transport) -> int:
    return transport.value().count(b"HTTP/1.1 204 ")


@pytest.fixture
def connections() -> Connections:
    return Connections()


def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(connections: Connections) -> None:
    _, transport = connections.open()
    connections.clock.advance(HEAD_TIMEOUT - 0.1)
    assert not closing(transport)
    connections.clock.advance(0.1)
    assert closing(transport)
    assert transport.value() == b""  # dropped without an answer


def test_a_head_trickling_in_is_closed_at_its_deadline_however_often_bytes_come(connections: Connections) -> None:
    channel, transport = connections.open()
    for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100:
        connections.clock.advance(HEAD_TIMEOUT / 40)
        channel.dataReceived(bytes([byte]))
        if closing(transport):
            break
    assert closing(transport)
    assert connections.clock.seconds() == pytest.approx(HEAD_TIMEOUT)


def test_a_complete_head_stops_the_head_deadline(connections: Connections) -> None:
    channel, transport = connections.open()
    connections.clock.advance(HEAD_TIMEOUT - 1)
    channel.dataReceived(REQUEST)
    assert answered(transport) == 1
    connections.clock.advance(IDLE_TIMEOUT_SECONDS - 1)
    assert not closing(transport)


def test_an_idle_keep_alive_connection_is_closed_after_the_idle_limit(connections: Connections) -> None:
    channel, transport = connections.open()
    channel.dataReceived(REQUEST)
    assert channel.phase is Phase.IDLE
    connections.clock.advance(IDLE_TIMEOUT_SECONDS - 0.1)
    assert not closing(transport)
    connections.clock.advance(0.1)
    assert closing(transport)


def test_the_next_requests_head_deadline_starts_at_its_first_byte(connections: Connections) -> None:
    channel, transport = connections.open()
    channel.dataReceived(REQUEST)
    connections.clock.advance(IDLE_TIMEOUT_SECONDS / 2)  # idle for longer than a head may take
    channel.dataReceived(b"G")
    assert channel.phase is Phase.HEAD
    connections.clock.advance(HEAD_TIMEOUT - 0.1)
    channel.dataReceived(b"ET /healthz")
    assert not closing(transport)
    connections.clock.advance(0.1)
    assert closing(transport)


def test_a_closing_connection_whose_client_does_not_read_is_aborted(connections: Connections) -> None:
    channel, transport = connections.open()
    channel.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answered(transport) == 1
    assert closing(transport)  # once its answer is written, which a client that never reads prevents
    connections.clock.advance(IDLE_TIMEOUT_SECONDS)  # Twisted's timeout: close once written...
    assert not transport.aborted
    connections.clock.advance(channel.abortTimeout)  # ...or abort soon after
    assert transport.aborted


def test_many_requests_on_one_connection_each_get_their_own_head_deadline(connections: Connections) -> None:
    channel, transport = connections.open()
    for _ in range(5):
        channel.dataReceived(REQUEST[:10])
        connections.clock.advance(HEAD_TIMEOUT - 1)
        channel.dataReceived(REQUEST[10:])
        connections.clock.advance(HEAD_TIMEOUT - 1)
    assert answered(transport) == 5
    assert not closing(transport)


def test_pipelined_requests_are_answered_in_turn(connections: Connections) -> None:
    channel, transport = connections.open()
    channel.dataReceived(REQUEST * 3 + b"GET /healthz HTTP/1.1\r\n")  # three and a half
    assert answered(transport) == 3
    assert channel.phase is Phase.HEAD
    connections.clock.advance(HEAD_TIMEOUT)
    assert closing(transport)


# --- the connection cap ----------------------------------------------------------------------


def test_at_the_cap_a_new_connection_closes_the_longest_idle_one() -> None:
    connections = Connections(max_http_connections=3)
    (first, first_transport), (second, second_transport), (_, busy_transport) = [connections.open() for _ in range(3)]
    first.dataReceived(REQUEST)  # idle first
    connections.clock.advance(1)
    second.dataReceived(REQUEST)  # idle second
    _, newcomer = connections.open()
    assert closing(first_transport)
    assert not closing(second_transport)
    assert not closing(busy_transport)
    assert not closing(newcomer)
    assert len(connections.factory.open) == 3
    assert metrics_count("evicted_idle") >= 1


def test_at_the_cap_with_none_idle_a_new_connection_gets_503_and_is_half_closed() -> None:
    connections = Connections(max_http_connections=2)
    busy = [connections.open() for _ in range(2)]
    refused_before = metrics_count("max_http_connections")
    channel, transport = connections.open()
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Content-Type: application/problem+json" in head
    assert b"Retry-After: " in head
    assert b'"status": 503' in body
    assert transport.write_closed  # what the client sends is read and discarded until it closes
    channel.dataReceived(REQUEST)
    assert channel.phase is Phase.REFUSED
    assert len(connections.factory.open) == 2
    assert metrics_count("max_http_connections") == refused_before + 1
    for _, other in busy:
        assert not closing(other)


def test_a_closed_connection_makes_room() -> None:
    connections = Connections(max_http_connections=1)
    channel, _ = connections.open()
    channel.connectionLost(None)
    assert connections.factory.open == set()
    _, transport = connections.open()
    assert transport.value() == b""  # admitted, not answered 503


def metrics_count(reason: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("webchannel_http_connections_closed_total", {"reason": reason}) or 0.0
