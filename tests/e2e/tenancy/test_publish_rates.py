"""``max_publish_rate`` of a named key against real ``manage.py serve`` processes: past it, 429 with
``Retry-After``; exact in one process, within the documented bound across two sharing a Redis.

Each publish is timed on the client, on the same wall clock the servers' windows follow: one
answered in the same second it was sent was admitted in that second's window; one that straddles
a second boundary could be in either, so a window's count is known to lie between the publishes
surely in it and those possibly in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.common import API_KEY, SECRET_KEY, assert_problem, bearer, make_token
from tests.e2e.helpers import channel_url, http_client, metric_value, metrics_text
from tests.harness import RedisServer, ServerProcess, serving, timeout

pytestmark = pytest.mark.slow

RATE = 20
LIMITED_KEY = "limited-key-0123456789"


def config(redis_url: str | None = None) -> str:
    redis = f'[redis]\nurl = "{redis_url}"\n' if redis_url else ""
    return f"""
[server]
listen_address = "127.0.0.1:0"

[channel]
secret_key = "{SECRET_KEY}"
api_keys = ["{API_KEY}"]

[[channel.keys]]
name = "limited"
key = "{LIMITED_KEY}"
scopes = ["publish", "create"]
max_publish_rate = {RATE}

{redis}"""


@dataclass(frozen=True)
class Outcome:
    """One publish: when it was sent and answered (wall clock), its status and ``Retry-After``."""

    sent: float
    answered: float
    status: int
    retry_after: str | None

    def surely_in(self, window: int) -> bool:
        return int(self.sent) == int(self.answered) == window

    def maybe_in(self, window: int) -> bool:
        return int(self.sent) <= window <= int(self.answered)


@dataclass(frozen=True)
class Windows:
    """The admitted publishes of each second fully inside the run: at least ``low``, at most ``high``."""

    low: dict[int, int]
    high: dict[int, int]
    refused: dict[int, int]


def per_window(outcomes: list[Outcome], began: float, ended: float) -> Windows:
    windows = range(int(began) + 1, int(ended))
    accepted = [o for o in outcomes if o.status == 204]
    return Windows(
        {w: sum(o.surely_in(w) for o in accepted) for w in windows},
        {w: sum(o.maybe_in(w) for o in accepted) for w in windows},
        {w: sum(o.surely_in(w) for o in outcomes if o.status == 429) for w in windows},
    )


async def publish_once(client: httpx.AsyncClient, server: ServerProcess, headers: dict[str, str]) -> Outcome:
    sent = time.time()
    response = await client.post(channel_url(server.url, "rated"), content=b"m", headers=headers)
    answered = time.time()
    if response.status_code == 429:
        problem = assert_problem(response, 429)
        assert "retry after" in problem["detail"]
    else:
        assert response.status_code == 204, response.text
    return Outcome(sent, answered, response.status_code, response.headers.get("retry-after"))


async def hammer(
    client: httpx.AsyncClient, servers: tuple[ServerProcess, ...], credentials: list[dict[str, str]], seconds: float
) -> tuple[list[Outcome], float, float]:
    """Publish as fast as four concurrent publishers per server can, for ``seconds``; publisher n
    presents ``credentials[n % len(credentials)]``."""
    outcomes: list[Outcome] = []
    began = time.time()
    deadline = time.monotonic() + seconds

    async def publisher(server: ServerProcess, headers: dict[str, str]) -> None:
        while time.monotonic() < deadline:
            outcomes.append(await publish_once(client, server, headers))

    await asyncio.gather(
        *(publisher(server, credentials[n % len(credentials)]) for server in servers for n in range(4))
    )
    return outcomes, began, time.time()


async def paced(
    client: httpx.AsyncClient, servers: tuple[ServerProcess, ...], headers: dict[str, str], seconds: float
) -> tuple[list[Outcome], float, float]:
    """Publish through each server at RATE messages a second, evenly spread: together, well over it."""
    began = time.time()
    started = time.monotonic()
    sends = []
    for n in range(int(seconds * RATE)):
        # Pacing the load, not waiting for anything: each tick sends whatever came before answered.
        await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))
        sends += [asyncio.create_task(publish_once(client, server, headers)) for server in servers]
    outcomes = await asyncio.gather(*sends)
    return list(outcomes), began, time.time()


def assert_told_when_to_retry(outcomes: list[Outcome]) -> None:
    refused = [o for o in outcomes if o.status == 429]
    assert refused, "nothing was refused: the rate was not applied"
    assert {o.retry_after for o in refused} == {"1"}  # whole seconds, until the window ends


@pytest.fixture
def single(tmp_path: Path) -> Iterator[ServerProcess]:
    with serving(tmp_path, config()) as server:
        yield server


@pytest.fixture
def pair(tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with contextlib.ExitStack() as stack:
        a = stack.enter_context(serving(tmp_path, config(redis_server.url), name="a"))
        b = stack.enter_context(serving(tmp_path, config(redis_server.url), name="b"))
        yield a, b


async def test_without_redis_a_key_publishes_exactly_its_rate_and_others_are_not_limited(
    single: ServerProcess,
) -> None:
    async with http_client() as client:
        outcomes, began, ended = await hammer(client, (single,), [{"x-api-key": LIMITED_KEY}], 3.5)
        unlimited = [await publish_once(client, single, {"x-api-key": API_KEY}) for _ in range(2 * RATE)]
    assert_told_when_to_retry(outcomes)
    windows = per_window(outcomes, began, ended)
    assert len(windows.low) >= 2
    for window in windows.low:
        assert windows.low[window] <= RATE <= windows.high[window], (window, windows)
    assert {o.status for o in unlimited} == {204}
    text = metrics_text(single.url)
    assert metric_value(text, "webchannel_publishes_rate_limited_total", {"key": "limited"}) == sum(
        o.status == 429 for o in outcomes
    )


async def test_a_token_carrying_the_key_counts_against_the_same_rate(single: ServerProcess) -> None:
    """A token minted by a named key names it in its ``key`` claim: its publishes and the key's own
    share the key's rate (two of the four publishers use the token: uncounted, they alone would
    far exceed it)."""
    credentials = [bearer(make_token("rated", key="limited")), {"x-api-key": LIMITED_KEY}]
    async with http_client() as client:
        outcomes, began, ended = await hammer(client, (single,), credentials, 3.5)
    assert_told_when_to_retry(outcomes)
    windows = per_window(outcomes, began, ended)
    assert len(windows.low) >= 2
    for window in windows.low:
        assert windows.low[window] <= RATE <= windows.high[window], (window, windows)


async def test_across_two_processes_a_burst_is_held_to_the_documented_bound(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    async with http_client() as client:
        outcomes, began, ended = await hammer(client, pair, [{"x-api-key": LIMITED_KEY}], 3.5)
    assert_told_when_to_retry(outcomes)
    windows = per_window(outcomes, began, ended)
    assert len(windows.low) >= 2
    for window in windows.low:
        # Each process admits at most the rate on its own: two at most twice it.
        assert windows.low[window] <= 2 * RATE, (window, windows)
        # Refused only once the processes together had admitted the rate (never too few).
        if windows.refused[window]:
            assert windows.high[window] >= RATE, (window, windows)


async def test_across_two_processes_steady_publishes_share_one_rate(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    """Each process is offered the whole rate: together twice it. Counting alone, each would admit
    all of its own; sharing the count, together they admit about the rate (what one process admits
    while the other has not heard of it yet is the excess)."""
    async with http_client() as client:
        outcomes, began, ended = await paced(client, pair, {"x-api-key": LIMITED_KEY}, 4.5)
    assert_told_when_to_retry(outcomes)
    windows = per_window(outcomes, began, ended)
    assert len(windows.low) >= 3
    assert sum(windows.low.values()) <= 1.5 * RATE * len(windows.low), windows
    for window in windows.low:
        assert windows.low[window] <= 2 * RATE, (window, windows)
        if windows.refused[window]:
            assert windows.high[window] >= RATE, (window, windows)
    # The answers came without waiting for Redis: publishes are counted in memory.
    assert max(o.answered - o.sent for o in outcomes) < timeout(1)
