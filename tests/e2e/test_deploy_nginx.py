"""The shipped ``deploy/nginx/webchannel.conf`` in front of a real ``manage.py serve``.

Debian's nginx runs the shipped file with only its listen port, upstream and access log path
replaced (``tests/nginx.py``); every request and WebSocket below goes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from channels_api.config import ChannelConfig
from tests.common import assert_problem
from tests.e2e.helpers import (
    closed_with,
    create_channel,
    http_client,
    publish,
    recv_binary,
    subscribe,
    wait_exit,
)
from tests.harness import ServerProcess, base_config, serving, timeout
from tests.nginx import Nginx, nginx_binary, proxying

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,  # two processes (webchannel and nginx) per test
    pytest.mark.skipif(
        nginx_binary() is None and os.environ.get("WEBCHANNEL_REQUIRE_NGINX") != "1",
        reason="nginx is not installed (Debian: apt-get install nginx)",
    ),
]

MAX_MESSAGE_SIZE = ChannelConfig().max_message_size
NGINX_BODY_LIMIT = 1024 * 1024  # client_max_body_size in the shipped file
SERVICE_RESTART = 1012


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Nginx]]:
    """One webchannel and the shipped nginx configuration in front of it."""
    tmp_path = tmp_path_factory.mktemp("nginx-proxied")
    with serving(tmp_path) as server, proxying(tmp_path / "nginx", [f"{server.host}:{server.port}"]) as nginx:
        yield server, nginx


async def test_binary_payloads_reach_a_subscriber_through_nginx_byte_exact(
    proxied: tuple[ServerProcess, Nginx],
) -> None:
    _, nginx = proxied
    payloads = [b"", bytes(range(256)), random.Random(5).randbytes(MAX_MESSAGE_SIZE)]
    channel_id, token = create_channel(nginx.url)
    async with subscribe(nginx.url, channel_id, token) as ws, http_client() as client:
        for payload in payloads:
            response = await publish(client, nginx.url, channel_id, payload, token=token)
            assert response.status_code == 204, response.text
        for payload in payloads:
            received = await recv_binary(ws)
            assert len(received) == len(payload)
            assert received == payload
    # The subscriber's token travelled in the query string; nginx's access log leaves it out.
    access_log = (nginx.prefix / "access.log").read_text()
    assert "?[redacted]" in access_log
    assert token not in access_log


async def test_an_oversized_publish_gets_webchannels_own_413_problem_through_nginx(
    proxied: tuple[ServerProcess, Nginx],
) -> None:
    _, nginx = proxied
    channel_id, token = create_channel(nginx.url)
    async with http_client() as client:
        response = await publish(client, nginx.url, channel_id, b"x" * (MAX_MESSAGE_SIZE + 1), token=token)
        problem = assert_problem(response, 413)
        assert f"at most {MAX_MESSAGE_SIZE} bytes" in problem["detail"]
        # Past the shipped client_max_body_size nginx answers itself, in HTML: the 413 above
        # is webchannel's.
        response = await publish(client, nginx.url, channel_id, b"x" * (NGINX_BODY_LIMIT + 1), token=token)
        assert response.status_code == 413
        assert response.headers["content-type"].startswith("text/html")


async def test_sigterm_to_webchannel_closes_subscribers_behind_nginx_with_1012(tmp_path: Path) -> None:
    config = base_config(server={"drain_window": 0.5})
    with serving(tmp_path, config) as server, proxying(tmp_path / "nginx", [f"{server.host}:{server.port}"]) as nginx:
        channel_id, token = create_channel(nginx.url)
        async with contextlib.AsyncExitStack() as stack:
            sockets = [await stack.enter_async_context(subscribe(nginx.url, channel_id, token)) for _ in range(3)]
            async with http_client() as client:
                response = await publish(client, nginx.url, channel_id, b"before", token=token)
                assert response.status_code == 204, response.text
            assert [await recv_binary(ws) for ws in sockets] == [b"before"] * 3
            server.signal(signal.SIGTERM)
            codes = await asyncio.gather(*(closed_with(ws, 10) for ws in sockets))
        assert codes == [SERVICE_RESTART] * 3
        assert wait_exit(server, 10) == 0, server.output()
        # nginx itself stays up and says so: the upstream is gone.
        assert nginx.alive()
        response = httpx.get(f"{nginx.url}/healthz", timeout=timeout(10))
        assert response.status_code == 502
