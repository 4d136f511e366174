"""A subscriber cut off as too slow always learns why: its messages, then close 4008.

A subscriber that stops reading for 5 s while 400 messages of 32 KiB are published to its
channel, and then reads everything, gets an in-order prefix of the messages followed by a
close frame with code 4008, never a reset without one. Twenty such runs, each on its own
channel and connection, go on at once against one server (a small ``max_backlog_bytes`` and a
small client receive buffer make each overflow early).
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.helpers import create_channel, raw_websocket_with_receive_buffer
from tests.e2e.test_reliability_slow_subscriber import KeepAlivePublisher
from tests.harness import ServerProcess, base_config, serving, timeout

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUNS = 20
MESSAGES = 400
MESSAGE_SIZE = 32 * 1024
PAUSE_SECONDS = 5.0
MAX_BACKLOG_BYTES = 64 * 1024
CLIENT_RCVBUF = 4096
TOO_SLOW = 4008


def message(run: int, i: int) -> bytes:
    """Message ``i`` of run ``run``: 32 KiB, numbered at both ends."""
    tag = struct.pack("!HI", run, i)
    return tag + bytes([i % 256]) * (MESSAGE_SIZE - 2 * len(tag)) + tag


@dataclass
class Outcome:
    received: int = 0
    close_code: int | None = None
    error: BaseException | None = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = base_config(server={"max_backlog_bytes": MAX_BACKLOG_BYTES}, channel={"max_message_size": MESSAGE_SIZE})
    with serving(tmp_path_factory.mktemp("slow-close"), config) as server:
        yield server


def run_paused_subscriber(server: ServerProcess, run: int, outcome: Outcome) -> None:
    """Subscribe, stop reading, publish the burst (every publish answered), resume reading after
    the pause (the scenario under test, not a synchronisation), read up to the close frame."""
    try:
        channel_id, token = create_channel(server.url)
        ws = raw_websocket_with_receive_buffer(server.url, channel_id, token, CLIENT_RCVBUF)
        try:
            paused_at = time.monotonic()
            with KeepAlivePublisher(server, channel_id, token) as publisher:
                for i in range(MESSAGES):
                    status = publisher.publish(message(run, i))
                    assert status == 204, f"run {run}: publish {i} answered {status}"
            time.sleep(max(0.0, paused_at + PAUSE_SECONDS - time.monotonic()))
            frames, outcome.close_code = ws.read_until_close(30)
            for i, frame in enumerate(frames):
                assert frame == message(run, i), f"run {run}: frame {i} is not message {i} (tag {frame[:6].hex()})"
            outcome.received = len(frames)
        finally:
            ws.close()
    except BaseException as exc:  # reported by the test thread
        outcome.error = exc


def test_a_subscriber_paused_during_a_burst_reads_a_prefix_then_close_4008_in_every_run(
    server: ServerProcess,
) -> None:
    outcomes = [Outcome() for _ in range(RUNS)]
    threads = [
        threading.Thread(target=run_paused_subscriber, args=(server, run, outcomes[run]), name=f"run-{run}")
        for run in range(RUNS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout(120))
    assert not any(thread.is_alive() for thread in threads), "a run did not finish in time"
    failures = [f"run {run}: {outcome.error!r}" for run, outcome in enumerate(outcomes) if outcome.error]
    assert not failures, "\n".join(failures) + "\n" + server.output()[-3000:]
    codes = [outcome.close_code for outcome in outcomes]
    assert codes == [TOO_SLOW] * RUNS, f"close codes: {codes}"
    counts = [outcome.received for outcome in outcomes]
    assert all(0 < count < MESSAGES for count in counts), f"messages before the close: {counts}"
    print(f"[slow-close] messages received before 4008, per run: {counts}")
    assert "Traceback" not in server.output()
