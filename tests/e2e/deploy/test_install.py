"""``pip install .`` into a fresh virtualenv outside the checkout gives a working ``webchannel`` command.

The checkout's files are copied first (what git tracks, plus files not yet committed), so the
build writes nothing into the checkout; the installed service then runs from another directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.common import API_KEY
from tests.harness import REPO, RedisServer, ServerProcess, base_config, clean_env, timeout, toml, wait_for
from tests.unit.test_packaging import requirement_lines

PACKAGES = ("channels_api", "webchannel_project", "webchannel_client")

CLIENT_ROUND_TRIP = """
import asyncio, sys, webchannel_client
from webchannel_client import AsyncClient, Client

assert "site-packages" in webchannel_client.__file__, webchannel_client.__file__

async def main(base_url, api_key):
    async with AsyncClient(base_url, api_key=api_key) as client:
        channel = await client.create_channel()
        async with client.subscribe(channel.channel_id, channel.token) as messages:
            with Client(base_url, api_key=api_key) as sync_client:
                sync_client.publish(channel.channel_id, b"installed", token=channel.token)
            message = await asyncio.wait_for(messages.__anext__(), 10)
    print(message.decode())

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _checkout_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


def _copy_checkout(dest: Path) -> list[str]:
    files = _checkout_files()
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    return files


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pip_install_gives_a_working_webchannel_command(tmp_path: Path, redis_server: RedisServer):
    before = _build_outputs(REPO)
    source = tmp_path / "source"
    files = _copy_checkout(source)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=timeout(120))
    bindir = venv / "bin"
    installed = subprocess.run(
        [str(bindir / "python"), "-m", "pip", "install", "--disable-pip-version-check", f"{source}[client]"],
        capture_output=True,
        text=True,
        timeout=timeout(600),
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    assert _build_outputs(REPO) == before, "the build wrote into the checkout"

    site = subprocess.run(
        [str(bindir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout.strip()
    _assert_package_files_installed(files, Path(site))
    _assert_dependencies_match_requirements(bindir / "python", tmp_path)

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    config_path = workdir / "webchannel.toml"
    config_path.write_text(toml(base_config()))
    env = clean_env(WC_ENV_FILE="", WC_LOG="info", PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH", None)

    check = subprocess.run(
        ["webchannel", "check"],
        cwd=workdir,
        env={**env, "WC_CONFIG_FILE": str(config_path)},
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "System check identified no issues" in check.stdout + check.stderr

    with _serve(workdir, config_path, env) as server:
        _assert_client_round_trip(bindir / "python", server, workdir, env)

    # serve --workers starts its workers as `python <argv[0]> serve ...`: here argv[0] is the script.
    workers_config = workdir / "workers.toml"
    workers_config.write_text(toml(base_config(redis={"url": redis_server.url})))
    with _serve(workdir, workers_config, env, "--workers", "2") as server:
        wait_for(lambda: _workers_started(server), 30, "the workers to start")
        _assert_client_round_trip(bindir / "python", server, workdir, env)


def _workers_started(server: ServerProcess) -> bool:
    return any(" workers: " in line and "started" in line for line in server.output().splitlines())


def _assert_client_round_trip(python: Path, server: ServerProcess, cwd: Path, env: dict[str, str]) -> None:
    """The installed client creates a channel, subscribes and receives what it published."""
    round_trip = subprocess.run(
        [str(python), "-c", CLIENT_ROUND_TRIP, server.url, API_KEY],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )
    assert round_trip.returncode == 0, round_trip.stdout + round_trip.stderr + server.output()
    assert round_trip.stdout.strip() == "installed"


def _build_outputs(root: Path) -> set[str]:
    return {path.name for path in [root / "build", root / "dist", *root.glob("*.egg-info")] if path.exists()}


@contextlib.contextmanager
def _serve(workdir: Path, config_path: Path, env: dict[str, str], *args: str) -> Iterator[ServerProcess]:
    """``webchannel serve -c FILE`` from ``workdir``, listening for the block, stopped after it."""
    log_path = workdir / f"{config_path.stem}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["webchannel", "serve", "-c", str(config_path), *args],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = ServerProcess(proc, log_path)
    try:
        server.wait_listening(30)
        yield server
    finally:
        server.stop()


def _assert_package_files_installed(files: list[str], site: Path) -> None:
    """Every file of the three packages (code and the data it reads) is in site-packages."""
    wanted = [name for name in files if name.split("/")[0] in PACKAGES and "__pycache__" not in name]
    assert any(name.endswith("py.typed") for name in wanted)
    missing = [name for name in wanted if not (site / name).is_file()]
    assert not missing, f"not installed: {missing}"


def _assert_dependencies_match_requirements(python: Path, cwd: Path) -> None:
    """The installed distribution requires exactly requirements.txt (plus the client extra)."""
    requires = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print('\\n'.join(m.requires('webchannel')))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    ).stdout.split("\n")
    runtime = sorted(line.replace(" ", "") for line in requires if line and "extra ==" not in line)
    expected = sorted(line.replace(" ", "") for line in requirement_lines(REPO / "requirements.txt"))
    assert runtime == expected
