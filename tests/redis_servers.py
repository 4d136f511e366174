"""Redis servers for the end-to-end tests beyond the plain one: TLS only, with passwords and ACL
users, several at once, and Redis Sentinel.

Each is a :class:`tests.harness.RedisServer` (free loopback port, empty, no persistence, killed by
PID) with more options on its command line. Certificates are made by ``openssl`` in the test's
directory. :meth:`ConfiguredRedis.client` is a redis-py client for looking at a server from the
test (``INFO``, ``PUBSUB CHANNELS``), never for driving webchannel.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests import programs
from tests.harness import RedisServer, free_port, redis_server_binary, timeout, wait_for

LOOPBACK = "127.0.0.1"


# --- TLS ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A private CA and a server certificate it signed, valid for 127.0.0.1 and localhost."""

    ca_cert: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path, name: str = "redis") -> TlsFiles:
    """Create a CA and a server key and certificate with ``openssl`` (EC P-256: fast) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / f"{name}-ca.key", directory / f"{name}-ca.crt"
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    extensions = directory / f"{name}.ext"
    extensions.write_text(f"subjectAltName=IP:{LOOPBACK},DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", ca_key, "-out", ca_cert, "-days", "2", "-subj", f"/CN={name} test CA")
    _openssl("req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={LOOPBACK}")
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", extensions,
    )  # fmt: skip
    return TlsFiles(ca_cert, cert, key)


def _openssl(*args: Any) -> None:
    binary = programs.require("openssl")
    result = subprocess.run([binary, *map(str, args)], capture_output=True, text=True, timeout=timeout(30), check=False)
    assert result.returncode == 0, f"openssl {args[0]} failed: {result.stderr}"


# --- servers -----------------------------------------------------------------------------------


@dataclass
class ConfiguredRedis(RedisServer):
    """A private ``redis-server`` with options: TLS only (``tls``), a default-user password
    (``password``, i.e. ``requirepass``), and ACL users (``acl``: name -> ``ACL SETUSER`` rules,
    set once the server answers). ``start`` after ``stop`` comes back on the same port."""

    tls: TlsFiles | None = None
    password: str | None = None
    acl: dict[str, list[str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.url_for()

    def url_for(self, user: str | None = None, password: str | None = None, db: int = 0) -> str:
        """The URL webchannel is given: ``rediss://`` with TLS, credentials as given (not the admin's)."""
        scheme = "rediss" if self.tls else "redis"
        credentials = f"{user or ''}:{password}@" if password is not None else (f"{user}@" if user else "")
        return f"{scheme}://{credentials}{LOOPBACK}:{self.port}/{db}"

    def command(self) -> list[str]:
        command = super().command()
        if self.tls is not None:
            port = command.index("--port")
            command[port + 1] = "0"  # no plain TCP port at all
            command += [
                "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls.cert),
                "--tls-key-file", str(self.tls.key),
                "--tls-ca-cert-file", str(self.tls.ca_cert),
                "--tls-auth-clients", "no",
            ]  # fmt: skip
        if self.password is not None:
            command += ["--requirepass", self.password]
        return command

    def start(self) -> None:
        super().start()
        for user, rules in self.acl.items():
            with self.client() as admin:
                admin.acl_setuser(user, reset=True)  # so a restart sets the same user again
                admin.execute_command("ACL", "SETUSER", user, *rules)

    def _answers(self) -> bool:
        """Up and speaking Redis (a password-protected server answers PING with NOAUTH)."""
        try:
            with contextlib.ExitStack() as stack:
                sock = stack.enter_context(socket.create_connection((LOOPBACK, self.port), timeout=0.5))
                if self.tls:
                    sock = stack.enter_context(self._tls_context().wrap_socket(sock, server_hostname=LOOPBACK))
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def _tls_context(self) -> ssl.SSLContext:
        assert self.tls is not None
        return ssl.create_default_context(cafile=str(self.tls.ca_cert))

    def client(self) -> redis.Redis:
        """An administrator's redis-py client (default user), for the test's own look at the server."""
        tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.tls.ca_cert)} if self.tls else {}
        return redis.Redis(
            host=LOOPBACK,
            port=self.port,
            password=self.password,
            socket_timeout=timeout(5),
            decode_responses=True,
            **tls,
        )

    def publish_calls(self) -> int:
        """How many PUBLISH commands this server has run (``INFO commandstats``)."""
        with self.client() as admin:
            return int(admin.info("commandstats").get("cmdstat_publish", {}).get("calls", 0))

    def pubsub_channels(self) -> set[str]:
        """The pub/sub channels somebody is subscribed to right now (``PUBSUB CHANNELS``)."""
        with self.client() as admin:
            return set(admin.pubsub_channels())


@contextlib.contextmanager
def redis_servers(workdir: Path, count: int = 1, **options: Any) -> Iterator[list[ConfiguredRedis]]:
    """``count`` started servers with the same ``options`` (see :class:`ConfiguredRedis`), each on its
    own free port; all killed when the block ends."""
    servers: list[ConfiguredRedis] = []
    try:
        for _ in range(count):
            server = ConfiguredRedis(workdir, **options)
            servers.append(server)
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


# --- Sentinel ----------------------------------------------------------------------------------


def redis_sentinel_command(config: Path) -> list[str]:
    """``redis-sentinel CONFIG``, else ``redis-server CONFIG --sentinel`` (the same program; Redis 7
    reads its configuration file only as the first argument). Without either, the test is skipped
    naming both (failed in CI, which installs them)."""
    found = programs.find("redis-sentinel")
    if found is not None:
        return [found, str(config)]
    if programs.find("redis-server") is None:
        programs.require("redis-sentinel")
    return [redis_server_binary(), str(config), "--sentinel"]


@dataclass
class RedisSentinel:
    """A private Redis Sentinel on a free loopback port monitoring ``master`` as ``master_name``
    (quorum 1, failure noticed after ``down_after_ms``)."""

    workdir: Path
    master: RedisServer
    master_name: str = "webchannel-test"
    down_after_ms: int = 1000
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> None:
        self.port = self.port or free_port()
        config = self.workdir / f"sentinel-{self.port}.conf"  # Sentinel rewrites its file: one each
        config.write_text(
            f"port {self.port}\nbind {LOOPBACK}\ndir {self.workdir}\n"
            f"sentinel monitor {self.master_name} {LOOPBACK} {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master_name} {max(2 * self.down_after_ms, 2000)}\n"
        )
        with open(self.workdir / f"sentinel-{self.port}.log", "wb") as log:
            self.proc = subprocess.Popen(redis_sentinel_command(config), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: self.master_address() is not None, 10, "redis-sentinel to know its master")
        except AssertionError:
            self.stop()
            raise

    def master_address(self) -> tuple[str, int] | None:
        """The master's address as this sentinel reports it, or None while it cannot answer."""
        if self.proc is None or self.proc.poll() is not None:
            log = self.workdir / f"sentinel-{self.port}.log"
            said = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
            raise AssertionError(
                f"redis-sentinel exited with {self.proc and self.proc.returncode}: {' | '.join(said) or 'no output'}"
            )
        try:
            with redis.Redis(host=LOOPBACK, port=self.port, socket_timeout=timeout(2), decode_responses=True) as client:
                answer = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        except (redis.RedisError, OSError):
            return None
        return (answer[0], int(answer[1])) if answer else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=timeout(10))
        self.proc = None


# --- watching what a server is asked ---------------------------------------------------------

_MONITORED = re.compile(r'"(publish|subscribe|unsubscribe|psubscribe|spublish|ssubscribe)" "((?:[^"\\]|\\.)*)"', re.I)


@dataclass
class Monitor:
    """``redis-cli MONITOR`` on a plain-TCP server, its output in a file: every command the server
    runs while it watches. Used as a context manager; stopped by PID."""

    server: RedisServer
    path: Path
    proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Monitor:
        binary = programs.require("redis-cli")
        with open(self.path, "wb") as out:
            self.proc = subprocess.Popen(
                [binary, "-h", LOOPBACK, "-p", str(self.server.port), "monitor"], stdout=out, stderr=subprocess.STDOUT
            )
        wait_for(lambda: self.path.read_bytes().startswith(b"OK"), 10, "redis-cli monitor to start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=timeout(10))

    def channels(self) -> list[tuple[str, str]]:
        """``(command, channel)`` of every pub/sub command seen so far, in order."""
        text = self.path.read_text(errors="replace")
        return [(match.group(1).upper(), match.group(2)) for match in _MONITORED.finditer(text)]
