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
from urllib.parse import unquote

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.layers import get_channel_layer

from channels_api.events import relay_message
from channels_api.layers import InMemoryChannelLayer
from channels_api.layers import relay as layers
from channels_api.layers.relay import DRAINED_MESSAGES, PRESSURE_MESSAGES
from channels_api.logs import REQUEST
from channels_api.names import group_name
from tests.common import bearer, make_token
from tests.harness import timeout
from tests.waiting import eventually
from webchannel_project.asgi import application

from .helpers import asgi_headers, channel_path

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
        # annotated dict[str, Any], to which the TypedDict event is not assignable
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
    await eventually(lambda: len(layer._backlogs[lagging]) > PRESSURE_MESSAGES, 5, "the publish to reach the layer")
    assert await _still_waiting(answer), "the publish was answered while the subscriber lagged"
    await _receive_until(layer, lagging, DRAINED_MESSAGES)
    async with asyncio.timeout(timeout(PROMPTLY)):
        response = await answer
    assert response.status_code == 204


class Commitment:
    """The server's ``webchannel.request`` extension, as a test drives it: draining or not, answered or not."""

    def __init__(self, *, answered: bool = False) -> None:
        self.draining: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.answered = answered
        self.committed = False
        self.key_name: str | None = None

    def commit(self) -> bool:
        if self.answered:
            return False
        self.committed = True
        return True


async def _request(method: str, channel_id: str, body: bytes, commitment: Commitment) -> ApplicationCommunicator:
    """A request through the ASGI application whose scope carries ``commitment``."""
    path = channel_path(channel_id)
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": asgi_headers(bearer(make_token(channel_id)), body),
        "extensions": {REQUEST: commitment},
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": body})
    return communicator


async def _status(communicator: ApplicationCommunicator, seconds: float) -> int:
    try:
        start = await communicator.receive_output(timeout(seconds))
        await communicator.receive_output(timeout(seconds))  # the body
        return int(start["status"])
    finally:
        communicator.stop(exceptions=False)


async def _lagging(channel_id: str) -> str:
    """A subscriber of ``channel_id`` with as many messages pending as a publish may leave it."""
    layer = get_channel_layer()
    lagging = await layer.new_channel()
    await layer.group_add(group_name(channel_id), lagging)
    for n in range(PRESSURE_MESSAGES):
        await layer.group_send(group_name(channel_id), relay_message(b"%d" % n))
    return lagging


@pytest.mark.usefixtures("long_cap")
async def test_a_publish_waiting_on_a_lagging_subscriber_is_answered_once_the_server_drains() -> None:
    lagging = await _lagging("bp-drain")
    commitment = Commitment()
    request = await _request("POST", "bp-drain", b"late", commitment)
    answer = asyncio.ensure_future(_status(request, 10))
    layer = get_channel_layer()
    await eventually(lambda: len(layer._backlogs[lagging]) > PRESSURE_MESSAGES, 5, "the publish to reach the layer")
    assert commitment.committed, "the publish reached the layer uncommitted"
    assert await _still_waiting(answer), "the publish was answered while the subscriber lagged"
    commitment.draining.set_result(None)
    async with asyncio.timeout(timeout(PROMPTLY)):
        assert await answer == 204


@pytest.mark.usefixtures("long_cap")
async def test_a_publish_while_the_server_drains_does_not_wait_on_a_lagging_subscriber() -> None:
    await _lagging("bp-drained")
    commitment = Commitment()
    commitment.draining.set_result(None)
    request = await _request("POST", "bp-drained", b"now", commitment)
    assert await _status(request, PROMPTLY) == 204
    assert commitment.committed


@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_a_request_the_stopping_server_already_answered_sends_nothing(method: str) -> None:
    layer = get_channel_layer()
    subscriber = await layer.new_channel()
    await layer.group_add(group_name("bp-answered"), subscriber)
    request = await _request(method, "bp-answered", b"too late", Commitment(answered=True))
    assert await _status(request, 5) == 503  # what the application says; the server ignores it
    assert len(layer._backlogs.get(subscriber) or ()) == 0, "the message reached the layer after its 503"
