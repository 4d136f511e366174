"""The shipped ``deploy/nginx/webchannel.conf`` in front of a real ``manage.py serve``.

Debian's nginx runs the shipped file with only its listen port, upstream and log paths
replaced (``tests/nginx.py``); every request and WebSocket below goes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from channels_api.config import ChannelConfig
from tests.common import assert_problem
from tests.e2e.helpers import (
    CHANNELS,
    channel_url,
    closed_with,
    create_channel,
    http_client,
    publish,
    recv_binary,
    subscribe,
    wait_exit,
    ws_url,
)
from tests.harness import ServerProcess, base_config, free_port, serving, timeout, wait_for
from tests.nginx import Nginx, proxying

pytestmark = [
    pytest.mark.slow,  # two processes (webchannel and nginx) per test
    pytest.mark.needs("nginx"),
]

MAX_MESSAGE_SIZE = ChannelConfig().max_message_size
NGINX_BODY_LIMIT = 1024 * 1024  # client_max_body_size in the shipped file
SERVICE_RESTART = 1012
CLIENT = "127.0.0.2"
"""The test's requests come from this loopback address, so nginx (on 127.0.0.1) sees another client."""
SPOOFED = "198.51.100.23"
"""What the client itself claims in X-Forwarded-For; nginx appends the address it saw."""


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


async def _subscribe_and_publish_from_the_client_address(nginx: Nginx, channel_id: str, token: str) -> None:
    """A subscriber and a publish through nginx, both from :data:`CLIENT` with a spoofed X-Forwarded-For."""
    spoofed = {"x-forwarded-for": SPOOFED}
    async with connect(
        ws_url(nginx.url, channel_id, token),
        additional_headers=spoofed,
        local_addr=(CLIENT, 0),
        open_timeout=timeout(10),
    ) as ws:
        transport = httpx.AsyncHTTPTransport(local_address=CLIENT)
        async with http_client(transport=transport) as client:
            headers = {**spoofed, "authorization": f"Bearer {token}"}
            response = await client.post(channel_url(nginx.url, channel_id), content=b"hello", headers=headers)
            assert response.status_code == 204, response.text
        assert await recv_binary(ws) == b"hello"
    # nginx saw the test's own address (the source binding worked).
    assert (nginx.prefix / "access.log").read_text().count(f"{CLIENT} - ") >= 2


def _access_lines(server: ServerProcess, channel_id: str) -> list[str]:
    """webchannel's access-log lines of the publish, the handshake and the close for ``channel_id``."""

    def lines() -> list[str]:
        found = [line for line in server.output().splitlines() if f'{CHANNELS}/{channel_id}"' in line]
        return found if len(found) >= 3 else []

    return wait_for(lines, 10, "the access-log lines of the publish and the subscriber")


async def test_with_nginx_trusted_the_access_log_names_the_client_nginx_saw(tmp_path: Path) -> None:
    config = base_config(server={"trusted_proxies": ["127.0.0.1"]})
    with serving(tmp_path, config) as server, proxying(tmp_path / "nginx", [f"{server.host}:{server.port}"]) as nginx:
        channel_id, token = create_channel(nginx.url)
        await _subscribe_and_publish_from_the_client_address(nginx, channel_id, token)
        lines = _access_lines(server, channel_id)
        for line in lines:
            # The right-most address nginx did not add itself, not the proxy and not the spoof.
            assert f"webchannel.access: {CLIENT} " in line, line
        assert any(f'{CLIENT} "POST {CHANNELS}/{channel_id}" 204' in line for line in lines), lines
        assert any(f'{CLIENT} "WS {CHANNELS}/{channel_id}" connected' in line for line in lines), lines
        assert SPOOFED not in server.output()


async def test_without_trusted_proxies_the_access_log_names_nginx(proxied: tuple[ServerProcess, Nginx]) -> None:
    server, nginx = proxied
    channel_id, token = create_channel(nginx.url)
    await _subscribe_and_publish_from_the_client_address(nginx, channel_id, token)
    lines = _access_lines(server, channel_id)
    for line in lines:
        assert "webchannel.access: 127.0.0.1:" in line, line  # nginx's own address and port
    assert CLIENT not in "\n".join(lines)
    assert SPOOFED not in server.output()


async def test_with_webchannel_down_a_token_in_the_url_reaches_neither_of_nginxs_logs(tmp_path: Path) -> None:
    """nginx writes the whole request line into its error log when it cannot reach the upstream;
    the shipped file keeps that log to ``crit``, and the access log still shows the 502."""
    secret = f"eyJhbGciOiJIUzI1NiJ9.eyJjaWQiOiJjIn0.SECRET-{random.Random().getrandbits(64):x}"
    with proxying(tmp_path / "nginx", [f"127.0.0.1:{free_port()}"]) as nginx:  # nothing listens there
        url = f"{channel_url(nginx.url, 'c')}?access_token={secret}"
        async with http_client() as client:
            assert (await client.get(url)).status_code == 502
            assert (await client.post(url, content=b"data")).status_code == 502
            events = await client.get(f"{channel_url(nginx.url, 'c')}/events?access_token={secret}")
            assert events.status_code == 502
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(ws_url(nginx.url, "c", secret), open_timeout=timeout(10)):
                pass
        assert refused.value.response.status_code == 502
    logs = {path.name: path.read_text(errors="replace") for path in nginx.prefix.glob("*.log")}
    assert {"access.log", "error.log", "webchannel.error.log"} <= set(logs), sorted(logs)
    for name, text in logs.items():
        assert secret not in text, f"{name} holds the token:\n{text}"
    access = [line for line in logs["access.log"].splitlines() if "/webchannel/v1/channels/c" in line]
    assert len(access) == 4, logs["access.log"]
    for line in access:
        assert "?[redacted]" in line, line
        assert '" 502 ' in line, line
        assert line.endswith(" upstream=502"), line
