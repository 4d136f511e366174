"""Benchmark messages and the per-subscriber bookkeeping that checks them.

Every message carries who sent it, its sequence number and when it was sent, in a 24-byte
header, then a fixed padding up to the message size. A subscriber checks each delivered
message byte for byte (header magic, length and padding; the header fields identify it) and
counts duplicates and messages that arrive after a later one of the same publisher; the
losses are what publishers had accepted (2xx) and a subscriber never saw.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

MAGIC = b"WCB1"
HEADER = struct.Struct("!4sIQQ")  # magic, publisher id, sequence number, send time (perf_counter_ns)
HEADER_SIZE = HEADER.size  # 24
PAD = bytes((i * 131 + 7) & 0xFF for i in range(1 << 20))
"""Deterministic padding with every byte value, so a corrupted byte anywhere is seen."""

now_ns = time.perf_counter_ns  # CLOCK_MONOTONIC: comparable across processes on Linux


def make(publisher: int, seq: int, size: int, sent_ns: int) -> bytes:
    """A ``size``-byte message (``size`` ≥ 24)."""
    return HEADER.pack(MAGIC, publisher, seq, sent_ns) + PAD[: size - HEADER_SIZE]


class Sequence:
    """One publisher's messages: it numbers them and records which the server accepted (2xx).

    A number is never reused, even when its publish failed, so a late delivery of a failed
    publish is not mistaken for a duplicate.
    """

    def __init__(self, publisher: int = 0, size: int = 100) -> None:
        self.publisher = publisher
        self.size = size
        self.next_seq = 0
        self.accepted = bytearray(1024)
        self.count = 0
        self.rejected: dict[int, int] = {}

    def body(self) -> tuple[int, bytes]:
        """The next message, stamped with the time now."""
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        return seq, make(self.publisher, seq, self.size, now_ns())

    def record(self, seq: int, status: int) -> bool:
        """Note the server's answer to message ``seq``; True when it was accepted."""
        if not 200 <= status < 300:
            self.rejected[status] = self.rejected.get(status, 0) + 1
            return False
        if seq >= len(self.accepted):
            self.accepted.extend(bytes(max(seq + 1, 2 * len(self.accepted)) - len(self.accepted)))
        self.accepted[seq] = 1
        self.count += 1
        return True

    def feeder(self, more: Callable[[int], bool]) -> Callable[[int], bytes | None]:
        """For ``Publisher.publish_all``: record each answer, then give the next message while ``more(seq)``."""
        pending = -1

        def next_body(status: int) -> bytes | None:
            nonlocal pending
            if status:
                self.record(pending, status)
            if not more(self.next_seq):
                return None
            pending, body = self.body()
            return body

        return next_body


@dataclass
class Tracker:
    """What one subscriber received: called for every data frame with its arrival time."""

    size: int
    received: int = 0
    duplicates: int = 0
    reordered: int = 0
    corrupt: int = 0
    first_ns: int = 0
    last_ns: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    seen: dict[int, bytearray] = field(default_factory=dict)
    highest: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._pad = PAD[: self.size - HEADER_SIZE]

    def __call__(self, data: bytes, arrived_ns: int) -> None:
        if len(data) != self.size or not data.startswith(MAGIC) or not data.endswith(self._pad):
            self.corrupt += 1
            return
        _, publisher, seq, sent_ns = HEADER.unpack_from(data)
        seen = self.seen.get(publisher)
        if seen is None:
            seen = self.seen[publisher] = bytearray(1024)
            self.highest[publisher] = -1
        if seq >= len(seen):
            seen.extend(bytes(max(seq + 1, 2 * len(seen)) - len(seen)))
        elif seen[seq]:
            self.duplicates += 1
            return
        seen[seq] = 1
        if seq < self.highest[publisher]:
            self.reordered += 1
        else:
            self.highest[publisher] = seq
        self.received += 1
        if not self.first_ns:
            self.first_ns = arrived_ns
        self.last_ns = arrived_ns
        self.latencies_ns.append(arrived_ns - sent_ns)

    def lost(self, publishers: dict[int, Sequence]) -> int:
        """Messages the server accepted from ``publishers`` that this subscriber never received."""
        lost = 0
        for publisher, sequence in publishers.items():
            seen = self.seen.get(publisher, b"")
            for seq, accepted in enumerate(sequence.accepted):
                if accepted and (seq >= len(seen) or not seen[seq]):
                    lost += 1
        return lost


def percentile(values: list[int], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return float(ordered[index])
