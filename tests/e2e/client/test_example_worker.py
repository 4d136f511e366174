"""examples/progress_worker.py, run as a separate process beside a serving process (one Redis):
it creates a channel, prints it, and its progress reaches a subscriber of the server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.helpers import recv_binary, subscribe
from tests.harness import REPO, RedisServer, base_config, clean_env, serving, timeout, toml

pytestmark = pytest.mark.slow

WORKER = REPO / "examples" / "progress_worker.py"


async def test_the_progress_worker_reports_0_to_100_percent_to_a_subscriber(tmp_path: Path, redis_server: RedisServer):
    config = tmp_path / "shared.toml"
    config.write_text(toml(base_config(redis={"url": redis_server.url})))
    with serving(tmp_path, config.read_text()) as server:
        worker = subprocess.Popen(
            [sys.executable, str(WORKER), "--wait", "--steps", "4", "--interval", "0"],
            cwd=tmp_path,  # not the checkout: PYTHONPATH finds webchannel, WC_CONFIG_FILE configures it
            env=clean_env(WC_CONFIG_FILE=str(config), WC_ENV_FILE="", PYTHONPATH=str(REPO)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout is not None
            assert worker.stdin is not None
            created = json.loads(worker.stdout.readline())
            async with subscribe(server.url, created["channelId"], created["token"]) as ws:
                worker.stdin.write("\n")
                worker.stdin.flush()
                received = [json.loads(await recv_binary(ws)) for _ in range(5)]
            out, err = worker.communicate(timeout=timeout(30))
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=timeout(10))
    assert received == [{"progress": p} for p in (0, 25, 50, 75, 100)]
    assert worker.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"channelId": created["channelId"], "progress": 100}


def test_the_progress_worker_refuses_a_bad_channel_id(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, str(WORKER), "--channel-id", "has space", "--interval", "0"],
        cwd=tmp_path,
        env=clean_env(WC_ENV_FILE="", PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )
    assert result.returncode != 0
    assert "InvalidChannelId" in result.stderr
