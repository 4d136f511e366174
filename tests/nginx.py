"""Debian's nginx in front of test servers: a real reverse proxy on a free loopback port.

nginx runs in the foreground (``daemon off``) with a generated main configuration whose every
path (pid, logs, temporary files) is under a private prefix directory, so it touches nothing
outside the test's ``tmp_path``. The site it serves is any http-level text, usually the shipped
``deploy/nginx/webchannel.conf`` with only its listen port, upstream servers and log paths
replaced (:func:`shipped_site`), so several upstreams work too (for rolling restarts). It is
stopped by PID, its workers with it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tests import programs
from tests.harness import REPO, free_port, timeout, wait_for

SHIPPED_SITE = REPO / "deploy" / "nginx" / "webchannel.conf"


def nginx_binary() -> str:
    """``nginx`` from PATH or Debian's ``/usr/sbin/nginx``; the calling test is skipped (failed in CI) without it."""
    return programs.require("nginx")


def _replace_one(text: str, pattern: str, replacement: str) -> str:
    """Replace the one line matching ``pattern``; fail if there is not exactly one (the file changed shape)."""
    result, count = re.subn(pattern, lambda _: replacement, text, flags=re.MULTILINE)
    assert count == 1, f"expected exactly one line matching {pattern!r} in {SHIPPED_SITE}, found {count}"
    return result


def shipped_site(listen_port: int, upstreams: Sequence[str], access_log: Path) -> str:
    """``deploy/nginx/webchannel.conf`` listening on ``127.0.0.1:listen_port`` (IPv4 only), proxying
    to ``upstreams`` (``host:port`` each) and logging to ``access_log`` and, for its error log,
    ``webchannel.error.log`` beside it (at the shipped level); nothing else changes."""
    text = SHIPPED_SITE.read_text()
    text = _replace_one(text, r"^    listen 80;$", f"    listen 127.0.0.1:{listen_port};")
    text = _replace_one(text, r"^    listen \[::\]:80;\n", "")
    text = _replace_one(text, r"^    server 127\.0\.0\.1:8080;$", "\n".join(f"    server {u};" for u in upstreams))
    error_log = access_log.with_name("webchannel.error.log")
    text = _replace_one(text, r"^    error_log \S+ crit;$", f"    error_log {error_log} crit;")
    return _replace_one(text, r"^    access_log \S+ webchannel;$", f"    access_log {access_log} webchannel;")


def _main_config(prefix: Path, site_path: Path) -> str:
    # As root, nginx would run its workers as "nobody", who cannot enter pytest's private
    # (0700) temporary directory: keep them as the user running the tests.
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp_paths = "".join(
        f"    {kind}_temp_path {prefix / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off;\nmaster_process on;\nworker_processes 1;\n{user}"
        f"pid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} notice;\n"
        "events {\n    worker_connections 1024;\n}\n"
        f"http {{\n    access_log {prefix / 'default-access.log'};\n{temp_paths}"
        f"    include {site_path};\n}}\n"
    )


def _descendants(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (nginx's workers), from ``/proc``."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
    return children


@dataclass
class Nginx:
    """A running nginx master (and its worker) on ``127.0.0.1:port``."""

    proc: subprocess.Popen[bytes]
    prefix: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        """nginx's own messages: its stderr and its error logs."""
        parts = [self.prefix / "stderr.log", self.prefix / "error.log", self.prefix / "webchannel.error.log"]
        return "\n".join(p.read_text(errors="replace") for p in parts if p.is_file())

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (the master stops its workers), then SIGKILL the master and its workers."""
        if not self.alive():
            return
        workers = _descendants(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout(10))
        except subprocess.TimeoutExpired:
            for pid in [self.proc.pid, *workers]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout(5))


def _accepts(nginx: Nginx) -> bool:
    if not nginx.alive():
        return True  # let the caller see the exit
    try:
        with socket.create_connection(("127.0.0.1", nginx.port), timeout=0.5):
            return True
    except OSError:
        return False


def start_nginx(prefix: Path, site: Callable[[int], str]) -> Nginx:
    """Start nginx serving ``site(port)`` on a free port; retry another port if that one was taken."""
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (Debian: apt-get install nginx)")
    prefix.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        port = free_port()
        site_path = prefix / "site.conf"
        site_path.write_text(site(port))
        config_path = prefix / "nginx.conf"
        config_path.write_text(_main_config(prefix, site_path))
        command = [binary, "-p", str(prefix), "-c", str(config_path), "-e", str(prefix / "error.log")]
        with open(prefix / "stderr.log", "wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        nginx = Nginx(proc, prefix, port)
        try:
            wait_for(partial(_accepts, nginx), 10, "nginx to listen")
        except AssertionError:
            nginx.stop()
            raise
        if nginx.alive():
            return nginx
        if "Address already in use" not in nginx.output():
            raise AssertionError(f"nginx exited with {proc.returncode}:\n{nginx.output()}")
    raise RuntimeError("could not start nginx on a free port")


@contextlib.contextmanager
def nginx_serving(prefix: Path, site: Callable[[int], str]) -> Iterator[Nginx]:
    """nginx serving ``site(port)`` for the duration of the block; stopped (by PID) afterwards."""
    nginx = start_nginx(prefix, site)
    try:
        yield nginx
    finally:
        nginx.stop()


@contextlib.contextmanager
def proxying(prefix: Path, upstreams: Sequence[str]) -> Iterator[Nginx]:
    """The shipped ``deploy/nginx/webchannel.conf`` in front of ``upstreams`` (``host:port`` each).

    Its access log is ``prefix / "access.log"``.
    """
    with nginx_serving(prefix, lambda port: shipped_site(port, upstreams, prefix / "access.log")) as nginx:
        yield nginx
