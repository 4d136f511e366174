"""``manage.py serve --workers N``: one listening socket, N Daphne processes, channels through Redis."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from tests.e2e.helpers import (
    closed_with,
    connection_refused,
    create_channel,
    http_client,
    non_empty_lines,
    publish,
    recv_binary,
    subscribe,
    wait_exit,
)
from tests.harness import RedisServer, base_config, run_serve, wait_for

pytestmark = pytest.mark.slow

WORKERS = 2


def _worker_pids(output: str) -> list[int]:
    for line in output.splitlines():
        if " workers: " in line and "started" in line.rsplit(" workers: ", 1)[0]:
            return [int(pid) for pid in line.rsplit(" workers: ", 1)[1].split(",")]
    return []


async def test_two_workers_share_one_port_and_deliver_to_every_subscriber_in_order(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    server = run_serve(tmp_path, base_config(redis={"url": redis_server.url}), args=["--workers", str(WORKERS)])
    try:
        server.wait_listening()
        pids = wait_for(lambda: _worker_pids(server.output()), 20, "the workers to start")
        assert len(pids) == WORKERS
        channel_id, token = create_channel(server.url)
        async with http_client() as client:
            subscribers = [subscribe(server.url, channel_id, token) for _ in range(30)]
            sockets = [await stack.__aenter__() for stack in subscribers]
            try:
                for seq in range(5):
                    response = await publish(client, server.url, channel_id, b"m%d" % seq, token=token)
                    assert response.status_code == 204
                for ws in sockets:
                    assert [await recv_binary(ws) for _ in range(5)] == [b"m%d" % seq for seq in range(5)]
            finally:
                for stack in subscribers:
                    await stack.__aexit__(None, None, None)
        # The kernel handed the subscribers' connections to both workers.
        accepted_by = {
            int(line.split("[", 1)[1].split("]", 1)[0])
            for line in server.output().splitlines()
            if "webchannel.access" in line and '"WS ' in line and line.endswith("connected")
        }
        assert accepted_by == set(pids)
    finally:
        server.stop()


async def test_sigterm_to_the_parent_drains_every_worker_and_exits_zero(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = base_config(redis={"url": redis_server.url}, server={"drain_window": 1})
    server = run_serve(tmp_path, config, args=["--workers", str(WORKERS)])
    try:
        server.wait_listening()
        wait_for(lambda: _worker_pids(server.output()), 20, "the workers to start")
        channel_id, token = create_channel(server.url)
        subscribers = [subscribe(server.url, channel_id, token) for _ in range(10)]
        sockets = [await stack.__aenter__() for stack in subscribers]
        server.signal(signal.SIGTERM)
        codes = await asyncio.gather(*(closed_with(ws, 10) for ws in sockets))
        assert set(codes) == {1012}
        assert wait_exit(server, 10) == 0
        assert connection_refused(server.host, server.port)
    finally:
        server.stop()


async def test_a_worker_that_dies_is_replaced(tmp_path: Path, redis_server: RedisServer) -> None:
    server = run_serve(tmp_path, base_config(redis={"url": redis_server.url}), args=["--workers", str(WORKERS)])
    try:
        server.wait_listening()
        pids = wait_for(lambda: _worker_pids(server.output()), 20, "the workers to start")
        os.kill(pids[0], signal.SIGKILL)
        wait_for(lambda: "restarting in" in server.output(), 10, "the supervisor to replace the worker")
        channel_id, token = create_channel(server.url)
        async with http_client() as client, subscribe(server.url, channel_id, token) as ws:
            assert (await publish(client, server.url, channel_id, b"after", token=token)).status_code == 204
            assert await recv_binary(ws) == b"after"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("config", "args", "expected"),
    [
        (base_config(), ["--workers", "2"], "--workers 2 needs redis.url"),
        (base_config(), ["--workers", "0"], "--workers must be 1 or more"),
        (
            base_config(redis={"url": "redis://127.0.0.1:1/0"}, server={"listen_address": "[::1]:0"}),
            ["--workers", "2"],
            "needs an IPv4 server.listen_address",
        ),
    ],
    ids=["no-redis", "zero", "ipv6"],
)
def test_bad_workers_option_exits_2_with_one_line(tmp_path: Path, config, args, expected: str) -> None:
    server = run_serve(tmp_path, config, args=args)
    try:
        assert wait_exit(server, 20) == 2
        errors = [line for line in non_empty_lines(server.output()) if "error" in line.lower()]
        assert len(errors) == 1, server.output()
        assert expected in errors[0]
        assert "Traceback" not in server.output()
    finally:
        server.stop()
