"""Fixtures for the in-process tests (Django test client, Channels communicators, channel layers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from channels.layers import channel_layers, get_channel_layer
from django.apps import apps
from django.conf import settings
from django.test import override_settings

from channels_api.runtime import Runtime

from .helpers import closed_port_redis_url, redis_layers


@pytest.fixture(autouse=True)
def fresh_channel_layers() -> Iterator[None]:
    """Every test starts with a new default channel layer (no backlog left over from another test)."""
    channel_layers.backends = {}
    yield
    channel_layers.backends = {}


@pytest.fixture(autouse=True)
def runtime() -> Iterator[Runtime]:
    """Every test starts with a new runtime (counts, readiness, rates) made from the settings."""
    app = apps.get_app_config("channels_api")
    previous = app.runtime  # type: ignore[attr-defined]
    app.runtime = Runtime.from_config(settings.WEBCHANNEL)  # type: ignore[attr-defined]
    try:
        yield app.runtime  # type: ignore[attr-defined]
    finally:
        app.runtime = previous  # type: ignore[attr-defined]


@pytest.fixture
async def unreachable_redis_layer() -> AsyncIterator[str]:
    """``CHANNEL_LAYERS`` points at webchannel's Redis layer on a closed loopback port."""
    url = closed_port_redis_url()
    with override_settings(CHANNEL_LAYERS=redis_layers(url)):
        try:
            yield url
        finally:
            await get_channel_layer().flush()


@pytest.fixture
async def silent_redis_layer() -> AsyncIterator[str]:
    """``CHANNEL_LAYERS`` points at a TCP server that accepts connections and never answers (a wedged Redis)."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
        finally:
            writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with override_settings(CHANNEL_LAYERS=redis_layers(f"redis://127.0.0.1:{port}/0")):
            try:
                yield f"redis://127.0.0.1:{port}/0"
            finally:
                await get_channel_layer().flush()
    finally:
        server.close()
        await server.wait_closed()
