"""A refused subscribe is a 403 whose problem+json body names the reason the access log has.

Each refusal a handshake can meet is produced against a real ``manage.py serve`` and read with
a real WebSocket client (``websockets``, which reads the body of a refused handshake).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
import websockets
from websockets.asyncio.client import connect

from tests.common import assert_problem_parts, expired_token, make_token
from tests.e2e.helpers import CHANNELS, create_channel, subscribe
from tests.harness import ServerProcess, base_config, serving, timeout, wait_for

pytestmark = [pytest.mark.slow]  # a server of its own (max_connections 1)


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


async def refusal(url: str, headers: dict[str, str] | None = None) -> dict[str, object]:
    """The problem document of a handshake that must be refused with 403."""
    try:
        async with connect(url, additional_headers=headers, open_timeout=timeout(10)):
            pass
    except websockets.InvalidStatus as exc:
        response = exc.response
        body = bytes(response.body or b"")
        return assert_problem_parts(response.status_code, response.headers.get("Content-Type"), body, 403)
    raise AssertionError(f"the handshake to {url} was accepted")


def logged_reason(server: ServerProcess, channel_id: str) -> str:
    """The reason of the access-log line of the refused subscribe to ``channel_id``."""
    marker = f'"WS {CHANNELS}/{channel_id}" refused '

    def line() -> str | None:
        return next((line for line in server.output().splitlines() if marker in line), None)

    return wait_for(line, 10, f"the access-log line of {channel_id}").rpartition(" refused ")[2]


async def test_each_refused_handshake_names_its_reason_in_a_problem_body(tmp_path: Path) -> None:
    with serving(tmp_path, base_config(server={"max_connections": 1})) as server:
        cases: dict[str, tuple[str, str | Callable[[str], str], str]] = {
            "invalid_token": (unique("bad"), "not-a-token", ""),
            "expired_token": (unique("old"), expired_token, ""),
            "wrong_channel": (unique("other"), lambda cid: make_token("some-other-channel"), ""),
            "invalid_channel_id": ("x" * 129, make_token, ""),  # past the 128-character limit
            "invalid_frames": (unique("frames"), make_token, "&frames=xml"),
        }
        for reason, (channel_id, minted, extra) in cases.items():
            token = minted(channel_id) if callable(minted) else minted
            url = f"{server.ws_url}{CHANNELS}/{channel_id}?access_token={quote(token, safe='')}{extra}"
            document = await refusal(url)
            assert document["title"] == "Forbidden", document
            assert str(document["detail"]).startswith(f"{reason}: "), document
            assert logged_reason(server, channel_id) == reason
        # The same from a token in the Authorization header.
        header = {"Authorization": f"Bearer {expired_token('in-header')}"}
        document = await refusal(f"{server.ws_url}{CHANNELS}/in-header", header)
        assert document["detail"] == "expired_token: the token has expired; fetch a fresh one", document
        # The one subscriber socket this process may hold is taken: the next handshake is refused.
        held_id, held_token = create_channel(server.url, unique("held"))
        channel_id, token = create_channel(server.url, unique("full"))
        async with subscribe(server.url, held_id, held_token):
            document = await refusal(f"{server.ws_url}{CHANNELS}/{channel_id}?access_token={quote(token, safe='')}")
            assert str(document["detail"]).startswith("max_connections: "), document
            assert logged_reason(server, channel_id) == "max_connections"
