"""Bounded waits: the one way the tests wait for something to become true.

Every bound is a number of seconds passed through :func:`timeout`, which scales it by
``WEBCHANNEL_TEST_TIMEOUT_SCALE`` on slow machines (``tests.harness`` re-exports it). A wait
polls its condition until the condition returns something truthy, and returns that; past the
bound it fails with an ``AssertionError`` naming what it waited for and the condition's last
answer. ``what`` may also be a function, asked only then, to describe the state at that moment.

- :func:`wait_for` for synchronous code; it blocks the thread between polls.
- :func:`eventually` for asynchronous code; the condition may be a plain function or return an
  awaitable (an ``async def``, ``asyncio.to_thread(...)``), and the event loop runs between polls.

The default pause between polls differs only because the conditions usually do: synchronous
ones mostly read a log file (0.02 s), asynchronous ones mostly ask a server (0.05 s). A
condition that samples something over time (five equal readings in a row) passes its own.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

TIMEOUT_SCALE = float(os.environ.get("WEBCHANNEL_TEST_TIMEOUT_SCALE", "1"))

T = TypeVar("T")
Description = str | Callable[[], str]
"""What a wait is for, in the failure message: a text, or a function that says it when the wait fails."""


def timeout(seconds: float) -> float:
    """A timeout of ``seconds``, scaled for slow machines."""
    return seconds * TIMEOUT_SCALE


def wait_for(condition: Callable[[], T | None], seconds: float, what: Description, interval: float = 0.02) -> T:
    """Poll ``condition`` every ``interval`` seconds until it returns something truthy, and return
    that; fail after ``timeout(seconds)``."""
    deadline = time.monotonic() + timeout(seconds)
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise _timed_out(seconds, what, result)
        time.sleep(interval)


@overload
async def eventually(
    condition: Callable[[], Awaitable[T | None]], seconds: float, what: Description, interval: float = ...
) -> T: ...
@overload
async def eventually(
    condition: Callable[[], T | None], seconds: float, what: Description, interval: float = ...
) -> T: ...
async def eventually(
    condition: Callable[[], object], seconds: float, what: Description, interval: float = 0.05
) -> object:
    """Poll ``condition`` (sync, or returning an awaitable) every ``interval`` seconds until it
    returns something truthy, and return that; fail after ``timeout(seconds)``."""
    deadline = time.monotonic() + timeout(seconds)
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise _timed_out(seconds, what, result)
        await asyncio.sleep(interval)


def _timed_out(seconds: float, what: Description, last: object) -> AssertionError:
    if callable(what):
        what = what()
    shown = repr(last)
    if len(shown) > 300:
        shown = shown[:300] + "..."
    return AssertionError(f"timed out after {timeout(seconds):.1f}s waiting for {what} (last: {shown})")
