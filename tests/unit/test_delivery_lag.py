"""channels_api.delivery_lag: each message observed once, after the turn in which it was written."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from channels_api.delivery_lag import DeliveryLag
from channels_api.events import relay_message


def observed() -> float:
    return REGISTRY.get_sample_value("webchannel_delivery_lag_seconds_count") or 0.0


def lag_sum() -> float:
    return REGISTRY.get_sample_value("webchannel_delivery_lag_seconds_sum") or 0.0


async def test_each_message_is_observed_once_however_often_it_is_written():
    lag = DeliveryLag()
    before, sum_before = observed(), lag_sum()
    first, second = relay_message(b"a", time.time() - 0.25), relay_message(b"b", time.time())
    for event in [first] * 100 + [second] * 100 + [first]:  # a subscriber of both channels came last
        if event is not lag.last:  # as the consumer calls it
            lag.written(event)
    assert observed() == before  # not before the turn in which they were written is over
    await asyncio.sleep(0)
    assert observed() == before + 2
    assert lag_sum() - sum_before >= 0.25


async def test_events_without_a_publish_time_are_not_observed():
    lag = DeliveryLag()
    before = observed()
    lag.written(relay_message(b"from an older process"))
    await asyncio.sleep(0)
    assert observed() == before


def test_a_turn_cut_short_by_a_stopped_loop_does_not_stop_later_observations():
    lag = DeliveryLag()

    async def write_and_stop() -> None:
        lag.written(relay_message(b"x", time.time()))
        asyncio.get_running_loop().stop()  # the loop ends with this turn: observe never runs

    before = observed()
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(write_and_stop())
    finally:
        loop.close()
    assert observed() == before
    assert lag.pending

    async def next_message() -> None:
        lag.written(relay_message(b"y", time.time()))
        await asyncio.sleep(0)

    asyncio.run(next_message())
    assert observed() == before + 1
