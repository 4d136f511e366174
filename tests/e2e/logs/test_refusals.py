"""A refused subscribe is one info line in a real server's access log, saying why, never the token.

Each reason is produced for real against ``manage.py serve`` (its log file is the server's
stderr), the same values the ``reason`` label of ``webchannel_websocket_refused_total`` takes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.common import expired_token, make_token
from tests.e2e.helpers import CHANNELS, closed_with, create_channel, subscribe, websocket_handshake
from tests.harness import RedisServer, ServerProcess, base_config, serving, wait_for

pytestmark = pytest.mark.slow  # servers of their own (one with Redis)

TRY_AGAIN_LATER = 4013


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def lines_for(server: ServerProcess, channel_id: str) -> list[str]:
    """The access-log lines of WebSockets to ``channel_id``."""
    return [line for line in server.output().splitlines() if f'"WS {CHANNELS}/{channel_id}"' in line]


def refusal_line(server: ServerProcess, channel_id: str, reason: str) -> str:
    """Wait for the one access-log line of the refused subscribe to ``channel_id``; check it."""
    wait_for(lambda: any(" refused " in line for line in lines_for(server, channel_id)), 10, f"the {reason} line")
    lines = [line for line in lines_for(server, channel_id) if " connected" not in line]
    assert len(lines) == 1, lines  # no "rejected" or "disconnected" line besides it
    line = lines[0]
    assert re.search(r" INFO \[\d+\] webchannel\.access: 127\.0\.0\.1:\d+ ", line), line
    assert line.endswith(f'"WS {CHANNELS}/{channel_id}" refused {reason}'), line
    return line


async def test_each_refusal_before_accept_is_one_access_log_line_with_its_reason(tmp_path: Path) -> None:
    config = base_config(server={"max_connections": 1})
    with serving(tmp_path, config) as server:
        cases: dict[str, tuple[str, Callable[[str], str]]] = {
            "invalid_token": (unique("bad"), lambda cid: "not-a-token"),
            "expired_token": (unique("old"), expired_token),
            "wrong_channel": (unique("other"), lambda cid: make_token("some-other-channel")),
            "invalid_channel_id": ("x" * 129, make_token),  # past the 128-character limit
        }
        tokens = []
        for reason, (channel_id, token_for) in cases.items():
            token = token_for(channel_id)
            tokens.append(token)
            status = websocket_handshake(server.url, f"{CHANNELS}/{channel_id}?access_token={token}")
            assert status == 403, reason
            refusal_line(server, channel_id, reason)
        # The one subscriber socket this process may hold is taken: the next handshake is refused.
        held_id, held_token = create_channel(server.url, unique("held"))
        channel_id, token = create_channel(server.url, unique("full"))
        tokens += [held_token, token]
        async with subscribe(server.url, held_id, held_token):
            status = websocket_handshake(server.url, f"{CHANNELS}/{channel_id}?access_token={token}")
            assert status == 403
            refusal_line(server, channel_id, "max_connections")
        log = server.output()
        for token in tokens:
            assert token not in log


async def test_a_subscribe_the_channel_layer_cannot_take_logs_layer_unavailable(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with serving(tmp_path, base_config(redis={"url": redis_server.url})) as server:
        channel_id, token = create_channel(server.url, unique("outage"))
        redis_server.stop()
        async with subscribe(server.url, channel_id, token) as ws:
            assert await closed_with(ws, 10) == TRY_AGAIN_LATER
        line = refusal_line(server, channel_id, "layer_unavailable")
        assert token not in server.output(), line
        # Accepted first (the socket was open when the layer failed), then this one line.
        assert [line for line in lines_for(server, channel_id) if line.endswith(" connected")]
