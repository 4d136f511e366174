"""A publish already on its way to the channel layer is never answered 503 by a draining server.

Clients retry every 503, so a 503 for a message that was delivered anyway delivers it twice.
Here the channel layer (a real Redis) is frozen (SIGSTOP) while publishes wait for it, as a
publish waits on backpressure or on a slow Redis, and the server is stopped (SIGTERM) so that
its drain deadline passes while they wait; then Redis resumes and delivers what it was given.
A subscriber on a second server records what arrives. Every message arrives at most once,
none answered 503 arrives, and every one answered 204 arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import create_channel, publish, recv_binary, subscribe, wait_exit
from tests.harness import RedisServer, ServerProcess, base_config, run_serve, serving, timeout, wait_for

pytestmark = pytest.mark.slow

PUBLISHERS = 8
DRAIN_WINDOW = 0.0
"""No subscribers on the stopping server: its drain deadline is its margin (1 s) after the signal."""
SENTINEL = b"sentinel"
MESSAGE_SIZE = 4096
"""Larger than anything else webchannel sends Redis: bytes waiting at Redis this many mean a publish."""


def queued_at(port: int) -> int:
    """Bytes received and not yet read by the (stopped) process listening on loopback ``port``."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01":  # ESTABLISHED
            total += int(fields[4].split(":")[1], 16)
    return total


@dataclass
class Outcomes:
    """What each publish was answered: message -> status (0: no answer)."""

    answered: dict[bytes, int] = field(default_factory=dict)
    in_flight: dict[int, bytes] = field(default_factory=dict)
    """Per publisher, the message it is waiting on."""

    def with_status(self, status: int) -> set[bytes]:
        return {message for message, got in self.answered.items() if got == status}


async def publish_until_refused(
    server: ServerProcess, channel_id: str, token: str, number: int, outcomes: Outcomes
) -> None:
    """Publish numbered messages one after another until the server stops listening."""
    deadline = time.monotonic() + timeout(60)
    async with httpx.AsyncClient(timeout=timeout(20)) as client:
        for seq in range(100_000):  # bounded: ends at the deadline or the refusal long before
            if time.monotonic() > deadline:
                return
            message = (b"%d-%d " % (number, seq)).ljust(MESSAGE_SIZE, b".")
            outcomes.in_flight[number] = message
            try:
                response = await publish(client, server.url, channel_id, message, token=token)
            except httpx.ConnectError:
                outcomes.in_flight.pop(number)
                return  # not listening any more: this one was never sent
            except httpx.TransportError:
                outcomes.answered[message] = 0  # cut off without an answer
                outcomes.in_flight.pop(number)
                return
            outcomes.answered[message] = response.status_code
            outcomes.in_flight.pop(number)


@contextlib.contextmanager
def resumed_at_exit(redis_server: RedisServer) -> Iterator[None]:
    try:
        yield
    finally:
        if redis_server.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(redis_server.proc.pid, signal.SIGCONT)


async def test_publishes_waiting_on_the_layer_at_the_drain_deadline_are_answered_and_delivered_once(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    redis = {"url": redis_server.url}
    assert redis_server.proc is not None
    with serving(tmp_path, base_config(redis=redis), name="listener") as listener, resumed_at_exit(redis_server):
        stopping = run_serve(tmp_path, base_config(redis=redis, server={"drain_window": DRAIN_WINDOW}), name="stopping")
        try:
            stopping.wait_listening()
            channel_id, token = create_channel(stopping.url)
            async with subscribe(listener.url, channel_id, token) as ws:
                received: list[bytes] = []
                outcomes = Outcomes()
                publishers = [
                    asyncio.create_task(publish_until_refused(stopping, channel_id, token, n, outcomes))
                    for n in range(PUBLISHERS)
                ]
                try:
                    await asyncio.to_thread(wait_for, lambda: len(outcomes.answered) >= 50, 20, "publishes to flow")
                    # From here a publish that reaches the channel layer hands its message over
                    # (the server writes it to Redis) and gets no reply.
                    os.kill(redis_server.proc.pid, signal.SIGSTOP)
                    await asyncio.to_thread(
                        wait_for, lambda: queued_at(redis_server.port) >= MESSAGE_SIZE, 10, "a publish queued at Redis"
                    )
                    stopping.signal(signal.SIGTERM)
                    # The deadline passes while every publish waits on Redis...
                    await asyncio.to_thread(wait_for, lambda: "drained;" in stopping.output(), 10, "the deadline")
                    # ...then Redis takes what it was given, before a publish's own 2 s bound.
                    os.kill(redis_server.proc.pid, signal.SIGCONT)
                    assert wait_exit(stopping, 10) == 0, stopping.output()
                    async with asyncio.timeout(timeout(30)):
                        await asyncio.gather(*publishers)
                finally:
                    for task in publishers:
                        task.cancel()
                async with httpx.AsyncClient(timeout=timeout(10)) as client:
                    response = await publish(client, listener.url, channel_id, SENTINEL, token=token)
                    assert response.status_code == 204, response.text
                while (message := await recv_binary(ws)) != SENTINEL:  # bounded by recv_binary's timeout
                    received.append(message)
        finally:
            stopping.stop()
    output = stopping.output()
    delivered = set(received)
    assert len(received) == len(delivered), "a message was delivered twice"
    both = sorted(message.split()[0] for message in outcomes.with_status(503) & delivered)
    assert not both, f"answered 503 and delivered: {both}\n{output}"
    assert outcomes.with_status(204) <= delivered, "answered 204 and not delivered"
    assert not outcomes.with_status(0) & delivered, "cut off without an answer, and delivered"
    # The case this is about happened: publishes waited on Redis through the deadline.
    committed = re.search(r"(\d+) committed still being answered", output)
    assert committed, output
    assert int(committed.group(1)) > 0, output
    assert "committed requests still unanswered" not in output, output
    assert "Traceback" not in output, output
