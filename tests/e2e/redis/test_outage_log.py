"""A Redis outage is logged once, however many requests fail, and its end once.

Complements tests/e2e/redis/test_sharing_and_outages.py (503 publishes during an outage, one "Redis pub/sub
connection lost" warning, recovery of old and new subscribers, 4013 for a subscribe during the
outage): an outage with many failed publishes *and* subscribes logs exactly one "channel layer
unavailable" warning, and one "channel layer available again" once a publish succeeds.
``/readyz`` during outages (a paused or a stopped Redis) is tested in tests/e2e/redis/test_readiness.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.e2e.helpers import closed_with, create_channel, http_client, publish, recv_binary, subscribe
from tests.harness import RedisServer, ServerProcess, base_config, serving
from tests.waiting import eventually

pytestmark = pytest.mark.slow

UNAVAILABLE = "channel layer unavailable"
AVAILABLE_AGAIN = "channel layer available again"


@pytest.fixture
def redis_backed(tmp_path: Path, redis_server: RedisServer) -> Iterator[ServerProcess]:
    with serving(tmp_path, base_config(redis={"url": redis_server.url}), name="redis-backed") as server:
        yield server


async def readyz(client: httpx.AsyncClient, server: ServerProcess) -> tuple[int, float]:
    started = time.monotonic()
    response = await client.get(f"{server.url}/readyz")
    return response.status_code, time.monotonic() - started


async def wait_readyz(client: httpx.AsyncClient, server: ServerProcess, status: int, seconds: float) -> float:
    """Poll ``/readyz`` until it answers ``status``; return how long that took."""
    started = time.monotonic()
    answered: list[int] = []

    async def answers() -> bool:
        answered.append((await readyz(client, server))[0])
        return answered[-1] == status

    await eventually(answers, seconds, lambda: f"/readyz to answer {status}, not {answered[-1]}", interval=0.1)
    return time.monotonic() - started


def log_lines(server: ServerProcess, text: str) -> list[str]:
    return [line for line in server.output().splitlines() if text in line]


async def test_an_outage_is_logged_once_however_many_requests_fail_and_its_end_once(
    redis_server: RedisServer, redis_backed: ServerProcess
) -> None:
    server = redis_backed
    channel_id, token = create_channel(server.url)
    async with http_client() as client:
        response = await publish(client, server.url, channel_id, b"before", token=token)
        assert response.status_code == 204
        await wait_readyz(client, server, 200, 10)

        redis_server.stop()
        await wait_readyz(client, server, 503, 10)
        for round_ in range(3):
            for _ in range(2):
                response = await publish(client, server.url, channel_id, b"during the outage", token=token)
                assert response.status_code == 503, response.text
            # A channel nobody here subscribes to yet, so subscribing needs Redis.
            other_id, other_token = create_channel(server.url)
            code, refused = None, None
            try:
                async with subscribe(server.url, other_id, other_token) as ws:
                    code = await closed_with(ws, 10)
            except websockets.InvalidStatus as exc:  # refused at the handshake: acceptable too
                refused = exc.response.status_code
            if refused is None:
                assert code == 4013, f"subscribe {round_} during the outage closed with {code}"
            else:
                assert refused in (403, 503), refused
        unavailable = log_lines(server, UNAVAILABLE)
        assert len(unavailable) == 1, f"{len(unavailable)} '{UNAVAILABLE}' lines:\n{server.output()}"
        assert "WARNING" in unavailable[0]
        assert log_lines(server, AVAILABLE_AGAIN) == []

        redis_server.start()  # empty, same port; webchannel is not restarted

        async def published() -> bool:
            response = await publish(client, server.url, channel_id, b"after", token=token)
            assert response.status_code in (204, 503), response.text
            return response.status_code == 204

        await eventually(published, 15, "a publish to succeed after Redis came back", interval=0.1)
        async with subscribe(server.url, channel_id, token) as ws:
            response = await publish(client, server.url, channel_id, b"after, received", token=token)
            assert response.status_code == 204
            assert await recv_binary(ws) == b"after, received"

    output = server.output()
    assert len(log_lines(server, UNAVAILABLE)) == 1, output
    again = log_lines(server, AVAILABLE_AGAIN)
    assert len(again) == 1, f"{len(again)} '{AVAILABLE_AGAIN}' lines:\n{output}"
    assert output.index(UNAVAILABLE) < output.index(AVAILABLE_AGAIN)
    assert output.count("Traceback") == 0, output
