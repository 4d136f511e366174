"""Runs the scenarios against each target, each scenario on a freshly started server.

A fresh server per scenario keeps them independent: a subscriber cut off or a backlog left by
the throughput run cannot slow the fan-out run, and the memory baseline of the connections run
is a server that has done nothing else. While a scenario runs, the CPU time of the server's
processes and of the generator is recorded over the measured phase (:class:`Meter`), so the
results show which side was the limit.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from .scenarios import SCENARIOS, Meter, Result, Sizes
from .system import Pinning
from .targets import Target, TargetUnavailable

SCENARIO_LIMIT_SECONDS = 600
"""No scenario may take longer than this, whatever the server does."""

T = TypeVar("T")


def event_loop_name() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio (install uvloop, requirements-bench.txt, for a faster load generator)"
    return f"uvloop {uvloop.__version__}"


def run_async(main: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on uvloop when installed (a faster generator), else on asyncio.

    The cyclic garbage collector is off meanwhile: a collection pausing the generator for
    milliseconds would show up as the server's latency. A bounded run allocates little garbage.
    """

    async def bounded() -> T:
        return await asyncio.wait_for(main(), SCENARIO_LIMIT_SECONDS)

    gc.collect()
    gc.disable()
    try:
        try:
            import uvloop
        except ImportError:
            return asyncio.run(bounded())
        return uvloop.run(bounded())
    finally:
        gc.enable()
        gc.collect()


def run_scenario(target: Target, name: str, sizes: Sizes, pinning: Pinning, workdir: Path) -> Result:
    """Start ``target``, run scenario ``name``, stop the target; figures plus CPU use."""
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        target.start(workdir, pinning)
        meter = Meter(target.pids, target.broker_cpu_seconds)
        started = time.perf_counter()
        result = run_async(lambda: SCENARIOS[name](target, sizes, meter))
        figures = {**result, **meter.figures, "seconds_total": round(time.perf_counter() - started, 2)}
        return {**figures, **broker_cost(name, figures)}
    except TargetUnavailable:
        raise
    except Exception as exc:
        detail = traceback.format_exc(limit=4)
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": detail}
    finally:
        target.stop()


BROKER_COST_UNITS = {"throughput": ("accepted_per_s", 1_000), "fanout": ("deliveries_per_s", 10_000)}
"""Redis CPU is reported per 1,000 publishes/s (throughput) and per 10,000 deliveries/s (fan-out)."""


def broker_cost(scenario: str, figures: Result) -> Result:
    """Redis CPU (% of one core) per unit of the scenario's rate, to size Redis for a deployment."""
    rate_key, unit = BROKER_COST_UNITS.get(scenario, ("", 0))
    redis, rate = figures.get("redis_cpu_percent"), figures.get(rate_key)
    if redis is None or not rate:
        return {}
    return {"redis_cpu_percent_per_unit": round(redis * unit / rate, 2), "redis_cost_unit": unit}


def run_all(
    targets: list[Target],
    scenarios: list[str],
    sizes: Sizes,
    pinning: Pinning,
    say: Callable[[str], None],
) -> tuple[dict[str, dict[str, Result]], list[str]]:
    """Results per target and scenario, and the names of targets that could not run here."""
    results: dict[str, dict[str, Result]] = {}
    unavailable: list[str] = []
    with tempfile.TemporaryDirectory(prefix="webchannel-bench-") as tmp:
        for target in targets:
            results[target.name] = {}
            for name in scenarios:
                say(f"{target.name}: {name} ...")
                try:
                    result = run_scenario(target, name, sizes, pinning, Path(tmp) / target.name / name)
                except TargetUnavailable as exc:
                    say(f"{target.name}: skipped: {exc}")
                    unavailable.append(target.name)
                    del results[target.name]
                    break
                results[target.name][name] = result
                say(f"{target.name}: {name}: {summary(name, result)}")
    return results, unavailable


def summary(name: str, result: dict[str, Any]) -> str:
    """One line per finished scenario, so a long run shows progress."""
    if "error" in result:
        return f"ERROR {result['error']}"
    keys = {
        "integrity": ["passed"],
        "latency": ["p50_ms", "p99_ms", "lost"],
        "throughput": ["delivered_per_s", "accepted_per_s", "lost", "cut_off", "p99_ms"],
        "fanout": ["deliveries_per_s", "lost", "p99_ms"],
        "connections": ["memory_per_socket_kib", "subscriptions_per_s", "errors"],
    }[name]
    figures = ", ".join(f"{k}={result.get(k)}" for k in keys)
    return (
        f"{figures} (server {result.get('server_cpu_percent')}% / generator {result.get('generator_cpu_percent')}% CPU)"
    )
