"""The channel layers' backpressure: a publish waits while a local subscriber lags, and its
HTTP answer with it.

Each bound here is far shorter than the wrong wait it rules out: the tests that expect a prompt
release make the layer's own cap (``PRESSURE_WAIT_SECONDS``) a minute, so a publish that sat out
the cap instead of noticing the subscriber caught up fails within a second; the tests that expect
a wait check that it had not ended after the event loop ran other tasks, so a publish that
returned at once fails too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

import pytest
from channels.layers import get_channel_layer

from channels_api import layers
from channels_api.events import relay_message
from channels_api.layers import DRAINED_MESSAGES, PRESSURE_MESSAGES, InMemoryChannelLayer
from channels_api.names import group_name
from tests.common import bearer, make_token
from tests.harness import timeout

from .helpers import channel_path, wait_until

GROUP = "wc.backpressure"
LONG_CAP_SECONDS = 60.0
"""The cap on a wait in tests that expect a prompt release: far beyond their bounds."""
PROMPTLY = 0.5
"""How long (scaled) a release may take once its cause happened: a few event-loop turns."""
STILL_WAITING = 0.05
"""How long a publish that should wait must still be waiting: it ran, and did not return."""


@pytest.fixture
def long_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layers, "PRESSURE_WAIT_SECONDS", LONG_CAP_SECONDS)


async def _subscriber(layer: InMemoryChannelLayer) -> str:
    channel = await layer.new_channel()
    await layer.group_add(GROUP, channel)
    return channel


async def _publish(layer: InMemoryChannelLayer, count: int) -> None:
    for n in range(count):
        await layer.group_send(GROUP, relay_message(b"%d" % n))


async def _receive_until(layer: InMemoryChannelLayer, channel: str, pending: int) -> None:
    while len(layer._backlogs[channel]) > pending:
        await layer.receive(channel)


async def _returns_without_waiting(awaitable: Awaitable[None]) -> bool:
    """True if ``awaitable`` finishes in its first step, without suspending."""
    task = asyncio.ensure_future(awaitable)
    await asyncio.sleep(0)  # one event-loop turn: the task's first step runs
    done = task.done()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return done


async def _still_waiting(task: asyncio.Future[Any]) -> bool:
    done, _ = await asyncio.wait({task}, timeout=STILL_WAITING)
    return not done


@pytest.mark.usefixtures("long_cap")
async def test_no_wait_while_no_subscriber_has_more_than_the_threshold_pending() -> None:
    layer = InMemoryChannelLayer()
    await _subscriber(layer)
    await _publish(layer, PRESSURE_MESSAGES)
    assert await _returns_without_waiting(layer.backpressure(GROUP)), "the publish waited with nobody lagging"


@pytest.mark.usefixtures("long_cap")
async def test_a_publish_waits_while_a_subscriber_lags_and_resumes_once_it_caught_up() -> None:
    layer = InMemoryChannelLayer()
    keeping_up = await _subscriber(layer)
    lagging = await _subscriber(layer)
    await _publish(layer, PRESSURE_MESSAGES + 5)
    await _receive_until(layer, keeping_up, 0)
    waiting = asyncio.create_task(layer.backpressure(GROUP))
    assert await _still_waiting(waiting), "the publish did not wait for the lagging subscriber"
    await _receive_until(layer, lagging, DRAINED_MESSAGES + 1)
    assert await _still_waiting(waiting), "the publish resumed before the subscriber was down to the drained mark"
    await _receive_until(layer, lagging, DRAINED_MESSAGES)
    async with asyncio.timeout(timeout(PROMPTLY)):
        await waiting


@pytest.mark.usefixtures("long_cap")
async def test_a_subscriber_that_goes_away_releases_the_waiting_publish() -> None:
    layer = InMemoryChannelLayer()
    lagging = await _subscriber(layer)
    await _publish(layer, PRESSURE_MESSAGES + 1)
    waiting = asyncio.create_task(layer.backpressure(GROUP))
    assert await _still_waiting(waiting), "the publish did not wait for the lagging subscriber"
    layer.forget_channel(lagging)
    async with asyncio.timeout(timeout(PROMPTLY)):
        await waiting


async def test_the_wait_lasts_the_cap_when_a_subscriber_never_catches_up(monkeypatch: pytest.MonkeyPatch) -> None:
    cap = 0.2
    monkeypatch.setattr(layers, "PRESSURE_WAIT_SECONDS", cap)
    layer = InMemoryChannelLayer()
    await _subscriber(layer)
    await _publish(layer, PRESSURE_MESSAGES + 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(timeout(10 * cap)):
        await layer.backpressure(GROUP)
    assert loop.time() - started >= 0.9 * cap, "the publish did not wait for the lagging subscriber"


@pytest.mark.usefixtures("long_cap")
async def test_a_publish_is_answered_only_once_a_lagging_subscriber_caught_up(async_client: Any) -> None:
    layer = get_channel_layer()
    group = group_name("bp-answer")
    lagging = await layer.new_channel()
    await layer.group_add(group, lagging)
    for n in range(PRESSURE_MESSAGES):  # the publish below makes it one too many
        await layer.group_send(group, relay_message(b"%d" % n))
    answer = asyncio.ensure_future(
        async_client.post(
            channel_path("bp-answer"),
            data=b"late",
            content_type="application/octet-stream",
            headers=bearer(make_token("bp-answer")),
        )
    )
    await wait_until(lambda: len(layer._backlogs[lagging]) > PRESSURE_MESSAGES, 5, "the publish to reach the layer")
    assert await _still_waiting(answer), "the publish was answered while the subscriber lagged"
    await _receive_until(layer, lagging, DRAINED_MESSAGES)
    async with asyncio.timeout(timeout(PROMPTLY)):
        response = await answer
    assert response.status_code == 204
