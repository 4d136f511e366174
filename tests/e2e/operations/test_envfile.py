"""``manage.py serve`` started in a directory with a ``.env`` file reads it: its values configure
the server, the process environment wins over them, and a bad value stops it with one line naming
the file and the variable."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import REPO, SECRET_KEY, ServerProcess, clean_env, timeout

FILE_KEY = "key-from-the-env-file"
ENV_FILE = f"""# webchannel, read from the working directory
WC_SERVER__LISTEN_ADDRESS=127.0.0.1:0
WC_CHANNEL__SECRET_KEY="{SECRET_KEY}"
export WC_CHANNEL__API_KEYS={FILE_KEY},second-key
"""


def start(workdir: Path, env: dict[str, str] | None = None) -> ServerProcess:
    """``manage.py serve`` with ``workdir`` as its working directory, no ``-c``, no WC_* from this shell."""
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "manage.py"), "serve"],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(WC_LOG="info", **(env or {})),
        )
    return ServerProcess(proc, log_path)


@pytest.fixture
def serving_in(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def create(server: ServerProcess, key: str) -> int:
    response = httpx.post(f"{server.url}/webchannel/v1/channels", headers={"x-api-key": key}, timeout=timeout(10))
    return response.status_code


def test_serve_reads_the_env_file_in_its_working_directory(tmp_path: Path, serving_in: list[ServerProcess]):
    (tmp_path / ".env").write_text(ENV_FILE)
    server = start(tmp_path)
    serving_in.append(server)
    server.wait_listening()
    assert create(server, FILE_KEY) == 200
    assert create(server, "second-key") == 200
    assert "generated API key" not in server.output()
    assert "channel.secret_key is not set" not in server.output()


def test_the_process_environment_wins_over_the_env_file(tmp_path: Path, serving_in: list[ServerProcess]):
    (tmp_path / ".env").write_text(ENV_FILE)
    server = start(tmp_path, {"WC_CHANNEL__API_KEYS": "key-from-the-shell"})
    serving_in.append(server)
    server.wait_listening()
    assert create(server, "key-from-the-shell") == 200
    assert create(server, FILE_KEY) == 401


def test_a_bad_value_in_the_env_file_stops_serve_with_one_line_naming_file_and_variable(
    tmp_path: Path, serving_in: list[ServerProcess]
):
    (tmp_path / ".env").write_text(ENV_FILE + "WC_CHANNEL__TTL=abc\n")
    server = start(tmp_path)
    serving_in.append(server)
    assert server.wait_exit(30) == 2
    lines = [line for line in server.output().splitlines() if line.strip()]
    assert lines == ["webchannel: configuration error: .env: WC_CHANNEL__TTL: expected an integer, got 'abc'"]


def test_wc_env_file_names_another_file(tmp_path: Path, serving_in: list[ServerProcess]):
    (tmp_path / ".env").write_text("WC_CHANNEL__TTL=abc\n")  # not read: WC_ENV_FILE names another
    (tmp_path / "prod.env").write_text(ENV_FILE)
    server = start(tmp_path, {"WC_ENV_FILE": "prod.env"})
    serving_in.append(server)
    server.wait_listening()
    assert create(server, FILE_KEY) == 200
