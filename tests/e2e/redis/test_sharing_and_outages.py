"""Several processes sharing channels through a real Redis, and what happens when Redis goes away.

With ``redis.url`` set, a message published to process A reaches subscribers on
process B; during a Redis outage publishes get 503, subscribers stay connected or are closed
with a retryable code, and the service recovers without a restart when Redis returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.protocol import State

from tests.common import assert_problem
from tests.e2e.helpers import (
    RETRYABLE_CLOSE_CODES,
    closed_with,
    create_channel,
    non_empty_lines,
    publish,
    recv_binary,
    subscribe,
)
from tests.harness import REPO, RedisServer, ServerProcess, base_config, clean_env, timeout, toml
from tests.waiting import eventually

pytestmark = pytest.mark.slow

OUTAGE_OBSERVATION_SECONDS = 3.0
LOST_WARNING = "Redis pub/sub connection lost"


def assert_open_or_retryable(ws: websockets.ClientConnection, name: str) -> bool:
    """A subscriber during an outage is either still open or was closed with a retryable code."""
    if ws.state is State.OPEN:
        return True
    assert ws.close_code in RETRYABLE_CLOSE_CODES, f"{name} closed with {ws.close_code}, not a retryable code"
    return False


async def wait_ready(client: httpx.AsyncClient, servers: list[ServerProcess], status: int, seconds: float) -> None:
    """Poll ``/readyz`` on every server until each answers ``status``."""
    pending = list(servers)
    last: dict[str, int] = {}

    async def every_one_answers() -> bool:
        for server in list(pending):
            response = await client.get(f"{server.url}/readyz")
            last[server.url] = response.status_code
            if response.status_code == status:
                pending.remove(server)
        return not pending

    await eventually(every_one_answers, seconds, lambda: f"/readyz to answer {status}: {last}", interval=0.1)


async def test_message_published_on_one_process_reaches_subscribers_on_both_in_order(
    redis_pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = redis_pair
    channel_id, token = create_channel(a.url)
    messages = [f"message {i}".encode() for i in range(20)] + [b"", b"\x00\xff\xfe binary"]
    async with (
        httpx.AsyncClient(timeout=timeout(10)) as client,
        subscribe(a.url, channel_id, token) as on_a,
        subscribe(b.url, channel_id, token, header=True) as on_b,
    ):
        # A single publish to A reaches the subscriber on B.
        response = await publish(client, a.url, channel_id, b"first", token=token)
        assert response.status_code == 204
        assert await recv_binary(on_b) == b"first"
        assert await recv_binary(on_a) == b"first"
        # A sequence, published alternately through both processes, arrives in order on both.
        for i, message in enumerate(messages):
            server = (a, b)[i % 2]
            response = await publish(client, server.url, channel_id, message, token=token)
            assert response.status_code == 204, response.text
        assert [await recv_binary(on_a) for _ in messages] == messages
        assert [await recv_binary(on_b) for _ in messages] == messages


async def test_redis_outage_answers_503_fast_with_one_warning_and_no_tracebacks(
    redis_server: RedisServer, redis_pair: tuple[ServerProcess, ServerProcess]
) -> None:
    a, b = redis_pair
    channel_id, token = create_channel(a.url)
    async with (
        httpx.AsyncClient(timeout=timeout(10)) as client,
        subscribe(a.url, channel_id, token) as on_a,
        subscribe(b.url, channel_id, token) as on_b,
    ):
        await wait_ready(client, [a, b], 200, 5)
        assert (await publish(client, a.url, channel_id, b"before", token=token)).status_code == 204
        assert await recv_binary(on_b) == b"before"
        assert await recv_binary(on_a) == b"before"

        redis_server.stop()
        await wait_ready(client, [a, b], 503, 5)
        # Keep publishing through both processes for a few seconds of outage: every publish
        # must be a 503 problem, each answered within 2 s, never a 204.
        publishes = 0
        slowest = 0.0
        started = time.monotonic()
        while time.monotonic() - started < OUTAGE_OBSERVATION_SECONDS:
            for server in (a, b):
                sent = time.monotonic()
                response = await publish(client, server.url, channel_id, b"during outage", token=token)
                slowest = max(slowest, time.monotonic() - sent)
                assert_problem(response, 503)
                publishes += 1
            await asyncio.sleep(0.2)  # pacing of the probe loop, not synchronisation
        assert publishes >= 4
        assert slowest < timeout(2.0), f"a publish during the outage took {slowest:.2f}s"
        for server in (a, b):
            response = await client.get(f"{server.url}/readyz")
            assert response.status_code == 503
        assert_open_or_retryable(on_a, "subscriber on A")
        assert_open_or_retryable(on_b, "subscriber on B")

    for name, server in (("A", a), ("B", b)):
        output = server.output()
        assert output.count("Traceback") == 0, f"tracebacks in the log of {name}:\n{output}"
        warnings = [line for line in output.splitlines() if LOST_WARNING in line]
        assert len(warnings) == 1, f"expected one '{LOST_WARNING}' line from {name}, got:\n{output}"
        assert "WARNING" in warnings[0]


async def test_service_recovers_without_restart_when_redis_returns(
    redis_server: RedisServer, redis_pair: tuple[ServerProcess, ServerProcess]
) -> None:
    a, b = redis_pair
    channel_id, token = create_channel(a.url)
    async with (
        httpx.AsyncClient(timeout=timeout(10)) as client,
        subscribe(a.url, channel_id, token) as old_a,
        subscribe(b.url, channel_id, token) as old_b,
        contextlib.AsyncExitStack() as stack,
    ):
        assert (await publish(client, b.url, channel_id, b"before", token=token)).status_code == 204
        assert await recv_binary(old_a) == b"before"
        assert await recv_binary(old_b) == b"before"

        redis_server.stop()
        await wait_ready(client, [a, b], 503, 5)
        assert_problem(await publish(client, a.url, channel_id, b"lost", token=token), 503)
        existing = [ws for ws, name in ((old_a, "A"), (old_b, "B")) if assert_open_or_retryable(ws, name)]
        # B already listens to this channel: a subscriber joining it now may be accepted and kept,
        # but then it must get the messages once Redis is back (never a silent zombie).
        late: websockets.ClientConnection | None = None
        with contextlib.suppress(websockets.InvalidStatus):  # refused at the handshake: acceptable too
            late = await stack.enter_async_context(subscribe(b.url, channel_id, token))

        redis_server.start()  # an empty Redis on the same port; webchannel is not restarted
        await wait_ready(client, [a, b], 200, 10)
        if late is not None and assert_open_or_retryable(late, "subscriber that joined B during the outage"):
            existing.append(late)
        async with subscribe(a.url, channel_id, token) as new_a, subscribe(b.url, channel_id, token) as new_b:
            messages = [b"after 1", b"after 2", b"after 3"]
            for i, message in enumerate(messages):
                response = await publish(client, (a, b)[i % 2].url, channel_id, message, token=token)
                assert response.status_code == 204, response.text
            for ws in [*existing, new_a, new_b]:
                assert [await recv_binary(ws) for _ in messages] == messages


async def test_subscribing_while_redis_is_down_is_closed_with_4013_not_hung(
    redis_server: RedisServer, redis_pair: tuple[ServerProcess, ServerProcess]
) -> None:
    a, b = redis_pair
    # A channel nobody on B subscribes to yet, so B must reach Redis to subscribe.
    channel_id, token = create_channel(a.url)
    async with httpx.AsyncClient(timeout=timeout(10)) as client:
        redis_server.stop()
        await wait_ready(client, [b], 503, 5)
    started = time.monotonic()
    refused_status: int | None = None
    code: int | None = None
    try:
        async with subscribe(b.url, channel_id, token) as ws:
            code = await closed_with(ws, 5)
    except websockets.InvalidStatus as exc:  # refused at the handshake: also acceptable
        refused_status = exc.response.status_code
    if refused_status is None:
        assert code == 4013, f"closed with {code}, expected 4013 (try again later)"
    else:
        assert refused_status in (503, 403), refused_status
    assert time.monotonic() - started < timeout(5)
    assert "Traceback" not in b.output()


def test_redis_without_secret_key_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = base_config(redis={"url": redis_server.url})
    del config["channel"]["secret_key"]
    config_path = tmp_path / "no-secret.toml"
    config_path.write_text(toml(config))
    result = subprocess.run(
        [sys.executable, "manage.py", "serve", "-c", str(config_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=clean_env(WC_LOG="info"),
        timeout=timeout(30),
        check=False,
    )
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = non_empty_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "channel.secret_key" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert "Listening" not in result.stdout + result.stderr
