"""A subscriber cut off as too slow always learns why: its messages, then close 4008.

A subscriber that stops reading for 5 s while 400 messages of 32 KiB are published to its
channel, and then reads everything, gets an in-order prefix of the messages followed by a
close frame with code 4008, never a reset without one. Twenty such runs, each on its own
channel and connection, go on at once against one server (a small ``max_backlog_bytes`` and a
small client receive buffer make each overflow early). A close by the application (4003, and the
4008 of an overflowing backlog) waits behind unread messages the same way.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.helpers import KeepAlivePublisher, create_channel, raw_websocket_with_receive_buffer
from tests.harness import ServerProcess, base_config, serving, timeout

pytestmark = pytest.mark.slow

RUNS = 20
MESSAGES = 400
MESSAGE_SIZE = 32 * 1024
PAUSE_SECONDS = 5.0
MAX_BACKLOG_BYTES = 64 * 1024
CLIENT_RCVBUF = 4096
TOO_SLOW = 4008
DATA_FROM_CLIENT = 4003
AUTOBAHN_CLOSE_TIMEOUT = 1.0


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


def test_a_close_by_the_application_also_waits_behind_the_messages_not_yet_read(server: ServerProcess) -> None:
    """The application's closes (4003 here; 4008 from an overflowing backlog and 4013 take the same
    way) are queued behind what the subscriber has not read: one that reads only after autobahn's
    one-second close timeout still gets every message, then the close frame."""
    channel_id, token = create_channel(server.url)
    ws = raw_websocket_with_receive_buffer(server.url, channel_id, token, CLIENT_RCVBUF)
    try:
        sent = [message(RUNS, i) for i in range(30)]  # about 1 MiB: in the kernel's buffers, under the bound
        with KeepAlivePublisher(server, channel_id, token) as publisher:
            for i, data in enumerate(sent):
                assert publisher.publish(data) == 204, f"publish {i}"
        ws.send_frame(0x2, b"data from a subscriber")  # closed with 4003
        time.sleep(2 * AUTOBAHN_CLOSE_TIMEOUT)  # the scenario: not reading for longer than that timeout
        frames, code = ws.read_until_close(30)
    finally:
        ws.close()
    assert code == DATA_FROM_CLIENT
    assert frames == sent
