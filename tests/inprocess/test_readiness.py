"""Readiness is cheap: concurrent /readyz calls share one channel-layer round trip, and a result
(ok or failed) is reused for up to a second, so probes cannot load Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from channels.layers import get_channel_layer
from django.test import override_settings

from channels_api.exceptions import LayerUnavailable
from channels_api.layers import InMemoryChannelLayer
from channels_api.readiness import READY_MAX_AGE_SECONDS, READY_TIMEOUT_SECONDS, Readiness
from tests.harness import timeout

from .helpers import asgi_request


class CountingLayer(InMemoryChannelLayer):
    """The in-memory layer, counting the readiness probes sent through it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.probes = 0

    async def group_send(self, group: str, message: Mapping[str, Any]) -> None:
        if message.get("type") == "readyz.probe":
            self.probes += 1
        await super().group_send(group, message)


class BrokenLayer(CountingLayer):
    """A layer whose sends fail, as Redis refusing connections would."""

    async def group_send(self, group: str, message: Mapping[str, Any]) -> None:
        await super().group_send(group, message)
        raise ConnectionError("refused")


class WedgedLayer(CountingLayer):
    """A layer whose sends never complete, as a paused Redis."""

    async def group_send(self, group: str, message: Mapping[str, Any]) -> None:
        await super().group_send(group, message)
        await asyncio.Event().wait()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting_layers() -> dict[str, Any]:
    return {"default": {"BACKEND": f"{__name__}.CountingLayer"}}


def test_an_outage_shows_within_two_seconds():
    # A 200 can be answered from a probe that started just before the outage, for max_age;
    # the next probe then gives up after its timeout.
    assert READY_MAX_AGE_SECONDS + READY_TIMEOUT_SECONDS < 2.0
    assert READY_MAX_AGE_SECONDS <= 1.0


async def test_a_hundred_concurrent_readyz_calls_share_one_round_trip():
    with override_settings(CHANNEL_LAYERS=counting_layers()):
        responses = await asyncio.gather(*(asgi_request("GET", "/readyz") for _ in range(100)))
        layer = get_channel_layer()
    assert [response.status for response in responses] == [200] * 100
    assert layer.probes == 1


async def test_calls_after_the_first_reuse_its_result_within_a_second():
    with override_settings(CHANNEL_LAYERS=counting_layers()):
        for _ in range(20):
            assert (await asgi_request("GET", "/readyz")).status == 200
        assert get_channel_layer().probes == 1


async def test_a_result_is_reused_until_max_age_then_probed_again():
    clock, layer = Clock(), CountingLayer()
    readiness = Readiness(max_age=1.0, within=timeout(2), clock=clock)
    await readiness.check(layer)
    clock.now += 0.99
    await readiness.check(layer)
    assert layer.probes == 1
    clock.now += 0.01
    await readiness.check(layer)
    assert layer.probes == 2


async def test_a_failure_is_reused_too_and_each_caller_gets_its_own_error():
    clock, layer = Clock(), BrokenLayer()
    readiness = Readiness(max_age=1.0, within=timeout(2), clock=clock)
    errors = []
    for _ in range(3):
        with pytest.raises(LayerUnavailable, match="ConnectionError") as info:
            await readiness.check(layer)
        errors.append(info.value)
    assert layer.probes == 1
    assert len({id(error) for error in errors}) == 3
    clock.now += 1.0
    with pytest.raises(LayerUnavailable):
        await readiness.check(layer)
    assert layer.probes == 2


async def test_concurrent_callers_of_a_wedged_layer_share_one_probe_that_times_out():
    layer = WedgedLayer()
    readiness = Readiness(max_age=1.0, within=0.05)
    async with asyncio.timeout(timeout(5)):
        results = await asyncio.gather(*(readiness.check(layer) for _ in range(50)), return_exceptions=True)
    assert all(isinstance(result, LayerUnavailable) for result in results), results
    assert "did not answer within 0.05 s" in str(results[0])
    assert layer.probes == 1


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_probe():
    layer = CountingLayer()
    readiness = Readiness(max_age=1.0, within=timeout(2))
    first = asyncio.ensure_future(readiness.check(layer))
    await asyncio.sleep(0)  # let it start the probe
    first.cancel()
    await readiness.check(layer)
    assert layer.probes == 1


async def test_another_layer_is_probed_afresh():
    readiness = Readiness(max_age=1.0, within=timeout(2))
    broken, working = BrokenLayer(), CountingLayer()
    with pytest.raises(LayerUnavailable):
        await readiness.check(broken)
    await readiness.check(working)
    assert (broken.probes, working.probes) == (1, 1)
