"""The channel layers' backpressure: a publish waits while a local subscriber lags (issue 4 §4)."""

from __future__ import annotations

import asyncio

import pytest

from channels_api import layers
from channels_api.events import relay_message
from channels_api.layers import DRAINED_MESSAGES, PRESSURE_MESSAGES, InMemoryChannelLayer
from tests.harness import timeout

GROUP = "wc.backpressure"


async def _subscriber(layer: InMemoryChannelLayer) -> str:
    channel = await layer.new_channel()
    await layer.group_add(GROUP, channel)
    return channel


async def _publish(layer: InMemoryChannelLayer, count: int) -> None:
    for n in range(count):
        await layer.group_send(GROUP, relay_message(b"%d" % n))


async def test_no_wait_while_every_subscriber_keeps_up() -> None:
    layer = InMemoryChannelLayer()
    await _subscriber(layer)
    await _publish(layer, PRESSURE_MESSAGES)
    async with asyncio.timeout(timeout(1)):
        await layer.backpressure(GROUP)


async def test_a_publish_waits_while_a_subscriber_lags_and_resumes_when_it_caught_up() -> None:
    layer = InMemoryChannelLayer()
    keeping_up = await _subscriber(layer)
    lagging = await _subscriber(layer)
    await _publish(layer, PRESSURE_MESSAGES + 5)
    for _ in range(PRESSURE_MESSAGES + 5):
        await layer.receive(keeping_up)
    waiting = asyncio.create_task(layer.backpressure(GROUP))
    done, _ = await asyncio.wait({waiting}, timeout=0.2)
    assert not done, "the publish did not wait for the lagging subscriber"
    while len(layer._backlogs[lagging]) > DRAINED_MESSAGES:
        await layer.receive(lagging)
    async with asyncio.timeout(timeout(1)):
        await waiting


async def test_a_subscriber_that_goes_away_releases_the_waiting_publish() -> None:
    layer = InMemoryChannelLayer()
    lagging = await _subscriber(layer)
    await _publish(layer, PRESSURE_MESSAGES + 1)
    waiting = asyncio.create_task(layer.backpressure(GROUP))
    done, _ = await asyncio.wait({waiting}, timeout=0.05)
    assert not done, "the publish did not wait for the lagging subscriber"
    layer.forget_channel(lagging)
    async with asyncio.timeout(timeout(1)):
        await waiting


async def test_the_wait_is_bounded_when_a_subscriber_never_catches_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layers, "PRESSURE_WAIT_SECONDS", 0.1)
    layer = InMemoryChannelLayer()
    await _subscriber(layer)
    await _publish(layer, PRESSURE_MESSAGES + 1)
    async with asyncio.timeout(timeout(1)):
        await layer.backpressure(GROUP)
