"""Graceful shutdown of ``manage.py serve`` on SIGTERM and SIGINT.

On the signal the server stops accepting, closes every subscriber socket with 1012 (service
restart; the README's close-code table) spread over ``server.drain_window`` seconds so that
clients do not all reconnect at once, and exits with status 0 within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import pytest
import websockets

from tests.e2e.helpers import connection_refused, create_channel, subscribe, wait_exit
from tests.harness import base_config, run_serve, timeout

SUBSCRIBERS = 30
DRAIN_WINDOW = 1.0
SERVICE_RESTART = 1012
SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]


async def closed_at(ws: websockets.ClientConnection) -> tuple[float, int | None]:
    """When the server closed ``ws`` (monotonic time) and the close code it sent."""
    try:
        while True:
            await ws.recv()
    except websockets.ConnectionClosed as exc:
        return time.monotonic(), (exc.rcvd.code if exc.rcvd is not None else None)


@pytest.mark.slow
@pytest.mark.parametrize("signum", SIGNALS)
async def test_signal_closes_every_subscriber_with_1012_spread_over_the_window_then_exits_0(
    tmp_path: Path, signum: signal.Signals
) -> None:
    server = run_serve(tmp_path, base_config(server={"drain_window": DRAIN_WINDOW}))
    try:
        server.wait_listening()
        channels = [create_channel(server.url) for _ in range(3)]
        async with contextlib.AsyncExitStack() as stack:
            sockets = await asyncio.gather(
                *(
                    stack.enter_async_context(subscribe(server.url, *channels[i % len(channels)]))
                    for i in range(SUBSCRIBERS)
                )
            )
            watchers = [asyncio.create_task(closed_at(ws)) for ws in sockets]

            signalled = time.monotonic()
            server.signal(signum)

            # Once the first subscriber is closed, the listening socket is already gone:
            # new connections are refused while the drain is still going on.
            done, _ = await asyncio.wait(watchers, timeout=timeout(DRAIN_WINDOW + 3), return_when="FIRST_COMPLETED")
            assert done, "no subscriber was closed after the signal"
            assert server.alive(), "the server exited before draining its subscribers"
            assert connection_refused(server.host, server.port), "a new connection was accepted after the signal"

            async with asyncio.timeout(timeout(DRAIN_WINDOW + 3)):
                results = await asyncio.gather(*watchers)

        codes = [code for _, code in results]
        assert codes == [SERVICE_RESTART] * SUBSCRIBERS, f"close codes: {codes}"
        times = sorted(at - signalled for at, _ in results)
        spread = times[-1] - times[0]
        assert spread >= 0.5 * DRAIN_WINDOW, f"closes not spread over the window: {times[0]:.2f}s..{times[-1]:.2f}s"
        assert times[-1] < DRAIN_WINDOW + timeout(2), f"last close {times[-1]:.2f}s after the signal"

        assert wait_exit(server, DRAIN_WINDOW + 3) == 0, server.output()
        exited = time.monotonic() - signalled
        assert exited < DRAIN_WINDOW + timeout(3), f"exited {exited:.2f}s after the signal"
        assert "Traceback" not in server.output(), server.output()
    finally:
        server.stop()


@pytest.mark.parametrize("signum", SIGNALS)
def test_signal_without_subscribers_exits_0_quickly(tmp_path: Path, signum: signal.Signals) -> None:
    server = run_serve(tmp_path, base_config(server={"drain_window": 5}))
    try:
        server.wait_listening()
        signalled = time.monotonic()
        server.signal(signum)
        assert wait_exit(server, 5) == 0, server.output()
        exited = time.monotonic() - signalled
        # Nothing to drain: no waiting for the (long) window.
        assert exited < timeout(3), f"exited {exited:.2f}s after the signal"
        assert "Traceback" not in server.output(), server.output()
    finally:
        server.stop()
