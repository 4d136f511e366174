"""``python manage.py runserver`` serves HTTP and WebSocket for development."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import create_channel, publish, recv_binary, subscribe, wait_exit
from tests.harness import API_KEY, REPO, SECRET_KEY, ServerProcess, clean_env, free_port, timeout, wait_for


def start_runserver(tmp_path: Path, port: int) -> ServerProcess:
    log_path = tmp_path / "runserver.log"
    env = clean_env(WC_LOG="info", WC_CHANNEL__SECRET_KEY=SECRET_KEY, WC_CHANNEL__API_KEYS=API_KEY)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return ServerProcess(proc, log_path, host="127.0.0.1", port=port)


def wait_healthy(server: ServerProcess) -> None:
    def healthy() -> bool:
        assert server.alive(), f"runserver exited with {server.proc.returncode}:\n{server.output()}"
        try:
            return httpx.get(f"{server.url}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, 30, "runserver to answer /healthz")


@pytest.fixture(scope="module")
def runserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One ``manage.py runserver 127.0.0.1:<port> --noreload``, stopped by PID afterwards."""
    server = start_runserver(tmp_path_factory.mktemp("runserver"), free_port())
    try:
        wait_healthy(server)
        yield server
    finally:
        server.stop()


async def test_runserver_serves_http_and_websocket(runserver: ServerProcess) -> None:
    server = runserver
    channel_id, token = create_channel(server.url)
    messages = [b"hello from runserver", b"", b"\x00\xff\x80 not utf-8", b"last"]
    async with httpx.AsyncClient(timeout=timeout(10)) as client, subscribe(server.url, channel_id, token) as ws:
        for message in messages:
            response = await publish(client, server.url, channel_id, message, token=token)
            assert response.status_code == 204, response.text
        assert [await recv_binary(ws) for _ in messages] == messages
        response = await publish(client, server.url, channel_id, b"by key", api_key=API_KEY)
        assert response.status_code == 204
        assert await recv_binary(ws) == b"by key"


async def test_runserver_access_log_redacts_tokens_and_keys(runserver: ServerProcess) -> None:
    """Tokens and API keys never appear in logs, whichever command serves."""
    server = runserver
    channel_id, token = create_channel(server.url, channel_id=f"redact-{free_port()}")
    async with httpx.AsyncClient(base_url=server.url, timeout=timeout(10)) as client:
        async with subscribe(server.url, channel_id, token) as ws:
            response = await publish(client, server.url, channel_id, b"x", token=token)
            assert response.status_code == 204
            assert await recv_binary(ws) == b"x"
        response = await client.get(f"/webchannel/v1/channels/{channel_id}", params={"access_token": token})
        assert response.status_code < 500
        path = f"/webchannel/v1/channels/{channel_id}"
        wait_for(lambda: f"GET {path}" in server.output(), 5, "the access line of the GET")
    output = server.output()
    assert token not in output, f"the channel token is in the runserver log:\n{output}"
    assert API_KEY not in output, output
    assert SECRET_KEY not in output, output


def test_runserver_stops_with_status_0_on_sigterm(tmp_path: Path) -> None:
    server = start_runserver(tmp_path, free_port())
    try:
        wait_healthy(server)
        server.signal(signal.SIGTERM)
        assert wait_exit(server, 10) == 0, server.output()
        assert "Traceback" not in server.output(), server.output()
    finally:
        server.stop()
