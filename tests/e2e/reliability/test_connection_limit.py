"""A cap on concurrent subscriber sockets per process (``server.max_connections``).

Over the cap the handshake is refused (HTTP 403, never upgraded) and counted in
``webchannel_websocket_refused_total{reason="max_connections"}``; once a subscriber leaves, a
new one is accepted again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import websockets

from tests.e2e.helpers import (
    create_channel,
    gauge_equals,
    http_client,
    metric_value,
    metrics_text,
    publish,
    recv_binary,
    refused_status,
    subscribe,
    users_connected,
    ws_url,
)
from tests.harness import RedisServer, ServerProcess, base_config, serving

MAX_CONNECTIONS = 3


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    config = base_config(server={"max_connections": MAX_CONNECTIONS})
    with serving(tmp_path_factory.mktemp("max-connections"), config) as server:
        yield server


def refused_for_capacity(server: ServerProcess) -> float:
    text = metrics_text(server.url)
    return metric_value(text, "webchannel_websocket_refused_total", {"reason": "max_connections"}) or 0.0


async def test_handshakes_over_max_connections_are_refused_counted_and_accepted_again_after_one_leaves(
    capped_server: ServerProcess,
) -> None:
    server = capped_server
    channel_id, token = create_channel(server.url)
    assert await asyncio.to_thread(refused_for_capacity, server) == 0
    async with contextlib.AsyncExitStack() as stack, http_client() as client:
        subscribers = [
            await stack.enter_async_context(subscribe(server.url, channel_id, token)) for _ in range(MAX_CONNECTIONS)
        ]
        await gauge_equals(server.url, MAX_CONNECTIONS)

        # The fourth, with a valid token, is refused at the handshake and counted.
        assert await refused_status(ws_url(server.url, channel_id, token)) == 403
        assert await asyncio.to_thread(refused_for_capacity, server) == 1
        await gauge_equals(server.url, MAX_CONNECTIONS)

        # The three still work.
        response = await publish(client, server.url, channel_id, b"to the three", token=token)
        assert response.status_code == 204
        for ws in subscribers:
            assert await recv_binary(ws) == b"to the three"

        # One leaves: there is room for exactly one more.
        await subscribers.pop().close()
        await gauge_equals(server.url, MAX_CONNECTIONS - 1)
        newcomer = await stack.enter_async_context(subscribe(server.url, channel_id, token))
        await gauge_equals(server.url, MAX_CONNECTIONS)
        response = await publish(client, server.url, channel_id, b"to the newcomer too", token=token)
        assert response.status_code == 204
        for ws in [*subscribers, newcomer]:
            assert await recv_binary(ws) == b"to the newcomer too"

        # Full again: refused again, and counted again.
        assert await refused_status(ws_url(server.url, channel_id, token)) == 403
        assert await asyncio.to_thread(refused_for_capacity, server) == 2
    await gauge_equals(server.url, 0)


CONCURRENT_HANDSHAKES = 12


@pytest.mark.parametrize("layer", ["in-process", "redis"])
async def test_concurrent_handshakes_never_open_more_than_max_connections(
    tmp_path: Path, request: pytest.FixtureRequest, layer: str
) -> None:
    """Twelve valid handshakes at once against a cap of three: three are accepted, nine refused
    (and counted), and the gauge never passes the cap."""
    config = base_config(server={"max_connections": MAX_CONNECTIONS})
    if layer == "redis":
        redis_server: RedisServer = request.getfixturevalue("redis_server")
        config["redis"] = {"url": redis_server.url}
    with serving(tmp_path, config, name=f"capped-{layer}") as server:
        channel_id, token = create_channel(server.url)
        async with contextlib.AsyncExitStack() as stack:

            async def handshake() -> websockets.ClientConnection | int:
                try:
                    return await stack.enter_async_context(subscribe(server.url, channel_id, token))
                except websockets.InvalidStatus as exc:
                    return exc.response.status_code

            outcomes = await asyncio.gather(*(handshake() for _ in range(CONCURRENT_HANDSHAKES)))
            accepted = [ws for ws in outcomes if not isinstance(ws, int)]
            refusals = [status for status in outcomes if isinstance(status, int)]
            connected = await asyncio.to_thread(users_connected, server.url)
            refused_counted = await asyncio.to_thread(refused_for_capacity, server)
            assert len(accepted) == MAX_CONNECTIONS, (
                f"{len(accepted)} of {CONCURRENT_HANDSHAKES} simultaneous handshakes were accepted with "
                f"server.max_connections = {MAX_CONNECTIONS} ({layer} layer); gauge {connected}"
            )
            assert refusals == [403] * (CONCURRENT_HANDSHAKES - MAX_CONNECTIONS)
            assert connected == MAX_CONNECTIONS
            assert refused_counted == CONCURRENT_HANDSHAKES - MAX_CONNECTIONS
