"""Helpers for the operations end-to-end tests (tests/e2e/test_ops_*.py).

Everything talks to real ``manage.py`` processes over loopback with real clients:
``httpx`` for HTTP, ``websockets`` (asyncio) for subscribers. Every wait is bounded by
:func:`tests.harness.timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect

from tests import harness
from tests.harness import API_KEY, ServerProcess, base_config, clean_env, timeout

CHANNELS = "/webchannel/v1/channels"
RETRYABLE_CLOSE_CODES = {4013, 1012, 1013}

# pytest-django puts DJANGO_SETTINGS_MODULE=tests.settings into os.environ, and the harness's
# clean_env() hands it on to the server processes, whose tests/settings.py then deletes every
# WC_* variable (WC_CONFIG_FILE included): the server would ignore its config file and
# listen on 127.0.0.1:8080. The processes under test must run the product's settings.
PRODUCT_SETTINGS = {"DJANGO_SETTINGS_MODULE": "webchannel_project.settings"}


def product_env(**extra: str) -> dict[str, str]:
    """The environment of a product process: no WC_* from this shell, the product's settings."""
    return clean_env(**{**PRODUCT_SETTINGS, **extra})


def run_serve(
    tmp_path: Path,
    config: dict[str, dict[str, Any]] | str | None,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    name: str = "server",
) -> ServerProcess:
    """:func:`tests.harness.run_serve` with the product's settings module."""
    return harness.run_serve(tmp_path, config, {**PRODUCT_SETTINGS, **(env or {})}, args, name)


@contextlib.contextmanager
def serving(
    tmp_path: Path,
    config: dict[str, dict[str, Any]] | str | None = None,
    env: dict[str, str] | None = None,
    name: str = "server",
) -> Iterator[ServerProcess]:
    """:func:`tests.harness.serving` with the product's settings module."""
    server = run_serve(tmp_path, base_config() if config is None else config, env, name=name)
    try:
        server.wait_listening()
        yield server
    finally:
        server.stop()


def create_channel(base_url: str, api_key: str = API_KEY, channel_id: str | None = None) -> tuple[str, str]:
    """Create a channel over HTTP; return ``(channelId, token)``."""
    body = {} if channel_id is None else {"channelId": channel_id}
    response = httpx.post(f"{base_url}{CHANNELS}", headers={"x-api-key": api_key}, json=body, timeout=timeout(10))
    assert response.status_code == 200, response.text
    document = response.json()
    return document["channelId"], document["token"]


def channel_url(base_url: str, channel_id: str) -> str:
    return f"{base_url}{CHANNELS}/{quote(channel_id, safe='')}"


async def apublish(
    client: httpx.AsyncClient,
    base_url: str,
    channel_id: str,
    data: bytes,
    *,
    token: str | None = None,
    api_key: str | None = None,
) -> httpx.Response:
    headers = {"content-type": "application/octet-stream"}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if api_key is not None:
        headers["x-api-key"] = api_key
    return await client.post(channel_url(base_url, channel_id), content=data, headers=headers)


def ws_url(base_url: str, channel_id: str, token: str | None = None) -> str:
    url = channel_url(base_url.replace("http://", "ws://", 1), channel_id)
    if token is not None:
        url += f"?access_token={quote(token, safe='')}"
    return url


@contextlib.asynccontextmanager
async def subscribe(
    base_url: str, channel_id: str, token: str, *, header: bool = False, **kwargs: Any
) -> AsyncIterator[ClientConnection]:
    """A subscriber socket (token in the query, or in ``Authorization`` with ``header=True``)."""
    if header:
        url = ws_url(base_url, channel_id)
        kwargs["additional_headers"] = {"Authorization": f"Bearer {token}"}
    else:
        url = ws_url(base_url, channel_id, token)
    kwargs.setdefault("open_timeout", timeout(10))
    kwargs.setdefault("max_size", None)
    async with connect(url, **kwargs) as ws:
        yield ws


async def recv(ws: ClientConnection, seconds: float = 5) -> bytes:
    """The next message, which must be a binary frame, within ``seconds``."""
    async with asyncio.timeout(timeout(seconds)):
        message = await ws.recv()
    assert isinstance(message, bytes), f"expected a binary frame, got text {message!r}"
    return message


async def close_code(ws: ClientConnection, seconds: float) -> int | None:
    """Wait until the server closes ``ws`` (ignoring data frames); return the received close code."""
    async with asyncio.timeout(timeout(seconds)):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None


def wait_exit(server: ServerProcess, seconds: float) -> int:
    """Wait for a process expected to exit by itself; kill it (and fail) if it does not."""
    try:
        return server.wait_exit(seconds)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=timeout(5))
        raise AssertionError(f"process did not exit within {timeout(seconds):.1f}s:\n{server.output()}") from None


def non_empty_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def connection_refused(host: str, port: int) -> bool:
    """True if a TCP connection to ``host:port`` is refused (nothing listening)."""
    try:
        with socket.create_connection((host, port), timeout=timeout(2)):
            return False
    except ConnectionRefusedError:
        return True
