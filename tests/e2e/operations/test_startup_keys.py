"""Generated secrets: only a serving command announces them, once, and the printed key is the one that works.

``runserver`` with its autoreloader is two processes and ``serve --workers 2`` three; each
used to generate (and print) a key of its own. Commands that serve nothing print nothing
about keys or secrets. Creates use a new connection each, so they reach every process that
serves.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import CHANNELS
from tests.harness import (
    REPO,
    SECRET_KEY,
    RedisServer,
    ServerProcess,
    base_config,
    clean_env,
    free_port,
    run_serve,
    timeout,
    wait_for,
)

CREATES = 20
_KEY_LINE = re.compile(r"generated API key for this process: (\S+)")
_ACCESS_PID = re.compile(r"\[(\d+)\] webchannel\.access")


def _the_one_printed_key(output: str) -> str:
    keys = _KEY_LINE.findall(output)
    assert len(keys) == 1, f"expected one generated key, found {len(keys)}:\n{output}"
    assert output.count(keys[0]) == 1, output
    return str(keys[0])


def _create_many(base_url: str, key: str) -> None:
    for i in range(CREATES):
        response = httpx.post(f"{base_url}{CHANNELS}", headers={"x-api-key": key}, timeout=timeout(10))
        assert response.status_code == 200, f"create {i + 1} of {CREATES}: {response.status_code} {response.text}"


@pytest.mark.parametrize("command", [["check"], ["help"], ["shell", "-c", "pass"], ["check", "--deploy"]], ids=" ".join)
def test_a_command_that_serves_nothing_says_nothing_about_secrets(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=REPO,
        env=clean_env(),  # neither secret configured: both are generated
        capture_output=True,
        text=True,
        timeout=timeout(60),
        check=False,
    )
    output = result.stdout + result.stderr
    assert "generated" not in output, output
    assert "is not set" not in output, output
    assert "Traceback" not in output, output


@pytest.mark.slow
def test_runserver_with_its_autoreloader_prints_one_key_and_it_works(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "runserver.log"
    with open(log_path, "wb") as log:
        # Its own session: the autoreloader's server process is killed with the group afterwards.
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(WC_LOG="info"),
            start_new_session=True,
        )
    server = ServerProcess(proc, log_path, host="127.0.0.1", port=port)
    try:
        wait_for(lambda: _answers(server), 30, "runserver to answer /healthz")
        key = _the_one_printed_key(server.output())
        _create_many(server.url, key)
        assert server.output().count("channel.secret_key is not set") == 1, server.output()
    finally:
        _stop_group(proc)
    assert _KEY_LINE.findall(server.output()) == [key], server.output()


@pytest.mark.slow
def test_serve_with_workers_prints_one_key_and_every_worker_accepts_it(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = base_config(redis={"url": redis_server.url})
    del config["channel"]["api_keys"]
    server = run_serve(tmp_path, config, args=["--workers", "2"])
    try:
        server.wait_listening()
        workers = wait_for(lambda: len(re.findall(r"worker \d+ started", server.output())) == 2, 20, "2 workers")
        assert workers
        key = _the_one_printed_key(server.output())
        _create_many(server.url, key)
        accepted_by = {
            int(match.group(1))
            for line in server.output().splitlines()
            if f'"POST {CHANNELS}" 200' in line and (match := _ACCESS_PID.search(line))
        }
        assert len(accepted_by) == 2, f"the creates did not reach both workers: {accepted_by}"
        assert SECRET_KEY not in server.output()
    finally:
        server.stop()
    assert _KEY_LINE.findall(server.output()) == [key], server.output()


def _answers(server: ServerProcess) -> bool:
    assert server.alive(), f"runserver exited with {server.proc.returncode}:\n{server.output()}"
    try:
        return httpx.get(f"{server.url}/healthz", timeout=timeout(2)).status_code == 200
    except httpx.TransportError:
        return False


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the autoreloader and its server process, SIGKILL if they linger."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, signum)
        except ProcessLookupError:
            break
        try:
            wait_for(lambda: not _group_alive(proc), 10, "runserver's processes to exit")
            break
        except AssertionError:
            continue
    proc.wait(timeout=timeout(5))


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    proc.poll()
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    return True
