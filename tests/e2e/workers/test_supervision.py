"""``serve --workers N`` under real supervisors: group signals, crash loops, blocked workers.

A terminal's Ctrl-C and systemd's ``KillMode=control-group`` signal every process of the
group, workers included; that must drain exactly like a signal to the supervisor alone. A
worker that keeps crashing is restarted with a growing delay while the others keep serving,
and no new connection is routed to its slot meanwhile. A worker whose event loop stops
(SIGSTOP here) is killed and replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.e2e.helpers import create_channel, publish, recv_binary, subscribe, wait_exit
from tests.harness import REPO, RedisServer, ServerProcess, base_config, clean_env, timeout, toml, wait_for

pytestmark = pytest.mark.slow

DRAIN_WINDOW = 1.0
SERVICE_RESTART = 1012
_STARTED = re.compile(r"worker (\d+) started \(slot (\d+)\)")
_RESTARTING = re.compile(r"\(slot (\d+)\); restarting in ([\d.]+)s")


def serve_in_own_group(tmp_path: Path, config: dict[str, dict[str, Any]], args: list[str]) -> ServerProcess:
    """``manage.py serve`` as a terminal or systemd starts it: the leader of its own process group."""
    config_path = tmp_path / "server.toml"
    config_path.write_text(toml(config))
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "-c", str(config_path), *args],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=clean_env(WC_LOG="info"),
            start_new_session=True,
        )
    return ServerProcess(proc, log_path)


@contextlib.contextmanager
def group_cleanup(server: ServerProcess) -> Any:
    """Stop the supervisor; then kill whatever of its process group is left (a worker it lost)."""
    try:
        yield
    finally:
        server.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)


def slots(output: str) -> dict[int, int]:
    """The current worker pid of each slot, from the supervisor's log."""
    return {int(slot): int(pid) for pid, slot in _STARTED.findall(output)}


def worker_listening(output: str, pid: int) -> bool:
    return f"[{pid}] daphne.server: Listening on TCP address" in output


def worker_of(output: str, ws: websockets.ClientConnection) -> int | None:
    """The pid of the worker that accepted ``ws`` (its access line names the client's port)."""
    port = ws.local_address[1]
    for line in output.splitlines():
        if f"webchannel.access: 127.0.0.1:{port} " in line and line.endswith("connected"):
            return int(line.split("[", 1)[1].split("]", 1)[0])
    return None


def owners(output: str, sockets: list[websockets.ClientConnection]) -> set[int] | None:
    """The workers holding ``sockets``, once every one of them is in the access log."""
    found = [worker_of(output, ws) for ws in sockets]
    return None if None in found else {pid for pid in found if pid is not None}


def workers_listening(output: str) -> bool:
    current = slots(output)
    return bool(current) and all(worker_listening(output, pid) for pid in current.values())


def fresh_connections() -> httpx.AsyncClient:
    """An HTTP client that opens a new TCP connection for every request (each one routed anew)."""
    return httpx.AsyncClient(timeout=timeout(5), limits=httpx.Limits(max_keepalive_connections=0))


async def closed_at(ws: websockets.ClientConnection) -> tuple[float, int | None]:
    try:
        while True:
            await ws.recv()
    except websockets.ConnectionClosed as exc:
        return time.monotonic(), (exc.rcvd.code if exc.rcvd is not None else None)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_to_the_process_group_drains_like_one_to_the_supervisor(
    tmp_path: Path, redis_server: RedisServer, signum: signal.Signals
) -> None:
    config = base_config(redis={"url": redis_server.url}, server={"drain_window": DRAIN_WINDOW})
    server = serve_in_own_group(tmp_path, config, ["--workers", "2"])
    with group_cleanup(server):
        server.wait_listening()
        wait_for(lambda: workers_listening(server.output()), 20, "the workers to listen")
        channel_id, token = create_channel(server.url)
        async with contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(subscribe(server.url, channel_id, token)) for _ in range(20)]
            pids = wait_for(lambda: owners(server.output(), sockets), 10, "the subscribers' access lines")
            watchers = [asyncio.create_task(closed_at(ws)) for ws in sockets]
            signalled = time.monotonic()
            os.killpg(server.pid, signum)  # what Ctrl-C or systemd's KillMode=control-group does
            async with asyncio.timeout(timeout(DRAIN_WINDOW + 5)):
                results = await asyncio.gather(*watchers)
        assert [code for _, code in results] == [SERVICE_RESTART] * len(sockets)
        times = sorted(at - signalled for at, _ in results)
        # Spread over the window, not cut short by the second copy of the signal.
        assert times[-1] - times[0] >= 0.5 * DRAIN_WINDOW, f"closes at {times[0]:.2f}s..{times[-1]:.2f}s"
        assert wait_exit(server, DRAIN_WINDOW + 10) == 0, server.output()
        output = server.output()
        assert "stopping now" not in output, output
        assert "Traceback" not in output, output
        # The group's signal and the supervisor's both reached the workers; each drained once.
        for pid in pids:
            assert len(re.findall(rf"\[{pid}\] \S+daphne_server: SIG(?:INT|TERM): draining", output)) == 1, output
            assert f"[{pid}] channels_api.server.daphne_server: {signum.name}" in output, output


async def test_a_crashing_worker_backs_off_while_the_other_keeps_delivering(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    server = serve_in_own_group(tmp_path, base_config(redis={"url": redis_server.url}), ["--workers", "2"])
    with group_cleanup(server):
        server.wait_listening()
        wait_for(lambda: workers_listening(server.output()), 20, "the workers to listen")
        channel_id, token = create_channel(server.url)
        async with subscribe(server.url, channel_id, token) as ws, fresh_connections() as client:
            survivor = wait_for(lambda: worker_of(server.output(), ws), 10, "the subscriber's access line")
            victim_slot = next(slot for slot, pid in slots(server.output()).items() if pid != survivor)
            sent = 0
            delays: list[float] = []
            for round_ in range(4):
                victim = slots(server.output())[victim_slot]

                def victim_listening(v: int = victim) -> bool:
                    return worker_listening(server.output(), v)

                def restarted(n: int = round_ + 1) -> bool:
                    return len(_RESTARTING.findall(server.output())) >= n

                wait_for(victim_listening, 20, "the victim to listen")
                os.kill(victim, signal.SIGKILL)
                wait_for(restarted, 10, "the restart log")
                delays.append(float(_RESTARTING.findall(server.output())[round_][1]))
                # While the slot waits (and while its worker starts), every new connection
                # reaches the surviving worker, and the subscriber there gets every message.
                deadline = time.monotonic() + timeout(30)
                while slots(server.output())[victim_slot] == victim or not workers_listening(server.output()):
                    assert time.monotonic() < deadline, f"slot {victim_slot} was not restarted:\n{server.output()}"
                    response = await publish(client, server.url, channel_id, b"m%d" % sent, token=token)
                    assert response.status_code == 204, response.text
                    assert await recv_binary(ws) == b"m%d" % sent
                    sent += 1
                    health = await asyncio.gather(*(client.get(f"{server.url}/healthz") for _ in range(5)))
                    assert [r.status_code for r in health] == [200] * 5
            assert delays == [0.5, 1.0, 2.0, 4.0], server.output()
            assert sent >= 20, f"only {sent} messages while the slot was down"
            assert slots(server.output())[1 - victim_slot] == survivor
            assert worker_of(server.output(), ws) == survivor
            # The survivor never restarted; it was never stopped.
            assert f"worker {survivor} exited" not in server.output()
            assert f"[{survivor}] channels_api.server.daphne_server: SIG" not in server.output()


async def test_a_worker_whose_event_loop_stops_is_killed_and_replaced(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    server = serve_in_own_group(
        tmp_path, base_config(redis={"url": redis_server.url}), ["--workers", "2", "--worker-timeout", "2"]
    )
    with group_cleanup(server):
        server.wait_listening()
        wait_for(lambda: workers_listening(server.output()), 20, "the workers to listen")
        stuck = slots(server.output())[0]
        os.kill(stuck, signal.SIGSTOP)  # the loop no longer runs, as with a blocking call
        wait_for(lambda: f"worker {stuck} (slot 0) did not answer for" in server.output(), 10, "the timeout")
        replacement = wait_for(
            lambda: slots(server.output())[0] != stuck and slots(server.output())[0], 10, "a new one"
        )
        wait_for(lambda: worker_listening(server.output(), replacement), 20, "the replacement to listen")
        wait_for(lambda: not Path(f"/proc/{stuck}").exists(), 5, "the stopped worker to be gone")
        channel_id, token = create_channel(server.url)
        async with fresh_connections() as client:
            for _ in range(10):
                assert (await client.get(f"{server.url}/healthz")).status_code == 200
            async with subscribe(server.url, channel_id, token) as ws:
                assert (await publish(client, server.url, channel_id, b"after", token=token)).status_code == 204
                assert await recv_binary(ws) == b"after"


async def test_a_second_group_signal_stops_the_workers_at_once(tmp_path: Path, redis_server: RedisServer) -> None:
    window = 30.0
    config = base_config(redis={"url": redis_server.url}, server={"drain_window": window})
    server = serve_in_own_group(tmp_path, config, ["--workers", "2"])
    with group_cleanup(server):
        server.wait_listening()
        wait_for(lambda: workers_listening(server.output()), 20, "the workers to listen")
        channel_id, token = create_channel(server.url)
        async with contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(subscribe(server.url, channel_id, token)) for _ in range(20)]
            await asyncio.to_thread(wait_for, lambda: owners(server.output(), sockets), 10, "the access lines")
            signalled = time.monotonic()
            os.killpg(server.pid, signal.SIGINT)
            wait_for(lambda: "SIGINT: stopping the workers" in server.output(), 10, "the supervisor's first stop")
            os.killpg(server.pid, signal.SIGINT)  # a second Ctrl-C: stop now, not after the window
            wait_exit(server, 10)
        assert time.monotonic() - signalled < window / 2, server.output()
        output = server.output()
        assert "second SIGINT: stopping the workers now" in output, output
        assert output.count("SIGUSR1 from the supervisor: stopping now") == 2, output
        assert "Traceback" not in output, output


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie nobody reaped yet has)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _metrics_directory(pid: int) -> Path:
    """The metrics directory a worker was given, from its environment."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    values = [item.split(b"=", 1)[1] for item in environ if item.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    assert values, "the worker has no PROMETHEUS_MULTIPROC_DIR"
    return Path(os.fsdecode(values[0]))


async def test_workers_drain_and_exit_and_leave_no_metrics_directory_when_their_supervisor_is_killed(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    config = base_config(redis={"url": redis_server.url}, server={"drain_window": DRAIN_WINDOW})
    server = serve_in_own_group(tmp_path, config, ["--workers", "2"])
    with group_cleanup(server):
        server.wait_listening()
        wait_for(lambda: workers_listening(server.output()), 20, "the workers to listen")
        workers = set(slots(server.output()).values())
        directory = _metrics_directory(next(iter(workers)))
        assert directory.is_dir()
        channel_id, token = create_channel(server.url)
        async with subscribe(server.url, channel_id, token) as ws:
            holder = await asyncio.to_thread(wait_for, lambda: worker_of(server.output(), ws), 10, "the access line")
            os.kill(server.pid, signal.SIGKILL)
            server.proc.wait(timeout=timeout(5))
            # The worker holding the subscriber drains it as on any stop: 1012.
            _, code = await asyncio.wait_for(closed_at(ws), timeout(DRAIN_WINDOW + 5))
        assert code == SERVICE_RESTART, server.output()
        wait_for(lambda: not any(_running(pid) for pid in workers), DRAIN_WINDOW + 5, "every worker to exit")
        assert f"[{holder}] channels_api.server.daphne_server: SIGTERM: draining" in server.output()
        wait_for(lambda: not directory.exists(), 5, f"{directory} to be removed")
        assert "Traceback" not in server.output(), server.output()
