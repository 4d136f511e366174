"""``python -m bench``: webchannel against Nchan, side by side, on this machine.

Starts each target itself on loopback (webchannel with the in-process layer, webchannel with a
private Redis, Nchan, and a do-nothing relay that shows the load generator's ceiling), runs the
scenarios, prints the table and writes results.md, results.json and results.png to ``--out``.
Exit status: 0 when every scenario ran and integrity held, 1 otherwise, 2 for bad options.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

from . import report
from .runner import event_loop_name, run_all
from .scenarios import FULL, QUICK, SCENARIOS, Sizes
from .system import busy_percent, choose_pinning, machine, pin_generator, raise_open_files_limit
from .targets import make_targets

DEFAULT_TARGETS = ["webchannel", "webchannel-redis", "nchan", "relay"]
KNOWN_TARGETS = [*DEFAULT_TARGETS, "webchannel-redis-w2", "url"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark webchannel against Nchan and write results.",
    )
    parser.add_argument(
        "--targets",
        help=f"comma-separated, from {','.join(KNOWN_TARGETS)} (default: {','.join(DEFAULT_TARGETS)}; with --url: url)",
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated (default: {','.join(SCENARIOS)})"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run of seconds, for CI)")
    parser.add_argument("--url", help="benchmark your own webchannel deployment at this base URL (no pinning)")
    parser.add_argument("--api-key", help="an API key of the --url deployment")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="results directory (bench/results/)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and generator to separate cores")
    args = parser.parse_args(argv)
    if args.url and not args.api_key:
        parser.error("--url needs --api-key")
    targets = args.targets.split(",") if args.targets else (["url"] if args.url else DEFAULT_TARGETS)
    args.explicit_targets = bool(args.targets)
    args.target_names = [t.strip() for t in targets if t.strip()]
    args.scenario_names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for name in args.target_names:
        if name not in KNOWN_TARGETS:
            parser.error(f"unknown target {name!r} (choose from {', '.join(KNOWN_TARGETS)})")
        if name == "url" and not args.url:
            parser.error("target url needs --url and --api-key")
    for name in args.scenario_names:
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r} (choose from {', '.join(SCENARIOS)})")
    return args


def describe_sizes(sizes: Sizes) -> str:
    return (
        f"latency {sizes.latency_messages} publishes (+{sizes.latency_warmup} warm-up); "
        f"throughput {sizes.throughput_publishers} publishers for {sizes.throughput_seconds:g} s; "
        f"fan-out {sizes.fanout_subscribers} subscribers x {sizes.fanout_messages} messages"
        f" from {sizes.fanout_publishers} publishers; "
        f"connections {sizes.connections} idle subscribers, {sizes.handshake_concurrency} handshakes at a time"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731 - progress goes to stderr
    notes: list[str] = []
    pinning, why_not = choose_pinning(enabled=not args.no_pin and not args.url)
    if why_not:
        notes.append(why_not)
        say(why_not)
    pin_generator(pinning)
    open_files = raise_open_files_limit()
    sizes = QUICK if args.quick else FULL
    if open_files < sizes.connections + 200:
        notes.append(f"open-files limit {open_files} is below {sizes.connections} subscribers: expect errors")
    targets = make_targets(args.target_names, args.url, args.api_key)
    host = machine()
    say(f"machine: {host.describe()}; {pinning.describe()}; load generator on {event_loop_name()}")
    busy = busy_percent()
    if busy > 10:
        notes.append(f"before the run, other processes kept {busy:.0f}% of a core busy")
        say(f"warning: the machine is not idle ({busy:.0f}% of a core busy): figures will be too low")

    results, unavailable = run_all(targets, args.scenario_names, sizes, pinning, say)
    for name in unavailable:
        notes.append(f"target {name} skipped: not available on this machine")
    notes += report.contention_notes(results)

    command = " ".join(["python -m bench", shlex.join(argv)]).strip()
    document = {
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": host.as_dict(),
        "machine_description": host.describe(),
        "pinning": pinning.describe(),
        "event_loop": event_loop_name(),
        "quick": args.quick,
        "sizes": sizes.as_dict(),
        "sizes_description": describe_sizes(sizes),
        "targets": {t.name: t.description for t in targets if t.name in results},
        "results": results,
        "notes": notes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    chart_skipped = report.write_chart(
        results, args.out / "results.png", f"{command}\n{host.describe()}; {pinning.describe()}"
    )
    if chart_skipped:
        notes.append(chart_skipped)
    report.write_json(document, args.out / "results.json")
    text = report.markdown(document)
    (args.out / "results.md").write_text(text)
    print(text)
    say(f"results written to {args.out}/results.md, results.json" + ("" if chart_skipped else ", results.png"))
    if chart_skipped:
        say(chart_skipped)

    failed = [
        f"{target}: {scenario}"
        for target, scenarios in results.items()
        for scenario, figures in scenarios.items()
        if "error" in figures or (scenario == "integrity" and not figures.get("passed"))
    ]
    if failed:
        say("failed: " + ", ".join(failed))
    if args.explicit_targets and unavailable:
        say("requested target(s) not available: " + ", ".join(unavailable))
    return 1 if failed or (args.explicit_targets and unavailable) else 0


if __name__ == "__main__":
    sys.exit(main())
