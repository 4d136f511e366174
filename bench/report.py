"""Results as a side-by-side table (stdout and ``results.md``), ``results.json`` and ``results.png``.

Rows are metrics, columns are targets, then one ``<target>/nchan`` ratio column per other
target. The ratio is always this target's figure divided by Nchan's: above 1 is better for
"higher is better" rows and worse for "lower is better" rows (each row says which).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Results = dict[str, dict[str, dict[str, Any]]]  # target -> scenario -> figures
REFERENCE = "nchan"


@dataclass(frozen=True)
class Metric:
    """One row: where its figure is in the results, how to show it and which way is better."""

    scenario: str
    key: str
    label: str
    better: str = ""  # "higher", "lower" or "" (not a figure to compare)
    chart: bool = False
    show: Callable[[dict[str, Any]], str] | None = None

    def value(self, figures: dict[str, Any]) -> float | None:
        value = figures.get(self.key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _integrity(figures: dict[str, Any]) -> str:
    if figures.get("passed"):
        return "pass"
    failed = {k: v for k, v in figures.get("checks", {}).items() if v != "ok"}
    return "FAIL: " + "; ".join(f"{k}: {v}" for k, v in failed.items())


def _cut_off(figures: dict[str, Any]) -> str:
    if not figures.get("cut_off"):
        return "no"
    return f"yes, close {figures.get('close_code')} after {figures.get('cut_off_after_s')} s"


def _lost(figures: dict[str, Any]) -> str:
    lost = figures.get("lost", 0)
    percent = figures.get("lost_percent")
    return f"{lost:,} ({percent:g}%)" if percent is not None else f"{lost:,}"


def _rejected(figures: dict[str, Any]) -> str:
    """Publishes answered with something else than 2xx, by status; plus ones that got no answer."""
    rejected = figures.get("rejected") or {}
    text = f"{sum(rejected.values()):,}"
    if rejected:
        several = len(rejected) > 1
        by_status = [f"HTTP {status}" + (f": {n:,}" if several else "") for status, n in sorted(rejected.items())]
        text += " (" + ", ".join(by_status) + ")"
    if figures.get("publish_errors"):
        text += f", {figures['publish_errors']} without answer"
    return text


def _odd(figures: dict[str, Any]) -> str:
    return f"{figures.get('reordered', 0)} / {figures.get('duplicated', 0)} / {figures.get('corrupt', 0)}"


METRICS = [
    Metric("integrity", "passed", "integrity: empty, 256 byte values, 512 KiB", show=_integrity),
    Metric("latency", "p50_ms", "latency p50, ms", "lower", chart=True),
    Metric("latency", "p99_ms", "latency p99, ms", "lower", chart=True),
    Metric("throughput", "delivered_per_s", "throughput: delivered msgs/s", "higher", chart=True),
    Metric("throughput", "accepted_per_s", "throughput: accepted publishes/s", "higher"),
    Metric("throughput", "rejected", "throughput: rejected publishes", show=_rejected),
    Metric("throughput", "lost", "throughput: lost (accepted, never delivered)", "lower", show=_lost),
    Metric("throughput", "cut_off", "throughput: subscriber cut off", show=_cut_off),
    Metric("throughput", "p99_ms", "throughput: p99 latency, ms", "lower", chart=True),
    Metric("throughput", "reordered", "throughput: reordered / duplicated / corrupt", show=_odd),
    Metric("throughput", "redis_cpu_percent_per_unit", "throughput: Redis CPU per 1,000 publishes/s, %", "lower"),
    Metric("fanout", "deliveries_per_s", "fan-out: deliveries/s", "higher", chart=True),
    Metric("fanout", "lost", "fan-out: lost (accepted, never delivered)", "lower", show=_lost),
    Metric("fanout", "p99_ms", "fan-out: p99 latency, ms", "lower", chart=True),
    Metric("fanout", "reordered", "fan-out: reordered / duplicated / corrupt", show=_odd),
    Metric("fanout", "redis_cpu_percent_per_unit", "fan-out: Redis CPU per 10,000 deliveries/s, %", "lower"),
    Metric("connections", "memory_per_socket_kib", "idle subscribers: memory per socket, KiB", "lower", chart=True),
    Metric("connections", "subscriptions_per_s", "idle subscribers: new subscriptions/s", "higher", chart=True),
]


def _number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return ""
    ratio = value / reference
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def cell(metric: Metric, figures: dict[str, Any] | None) -> str:
    if figures is None:
        return "—"
    if "error" in figures:
        return "error"
    if metric.show is not None:
        return metric.show(figures)
    value = metric.value(figures)
    return _number(value) if value is not None else "n/a"


def table_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the side-by-side table."""
    targets = list(results)
    others = [t for t in targets if t != REFERENCE] if REFERENCE in targets else []
    header = ["metric", *targets, *(f"{t}/{REFERENCE}" for t in others)]
    rows = []
    for metric in METRICS:
        if not any(metric.scenario in results[t] for t in targets):
            continue
        better = f" ({metric.better} is better)" if metric.better else ""
        row = [metric.label + better]
        row += [cell(metric, results[t].get(metric.scenario)) for t in targets]
        reference = results.get(REFERENCE, {}).get(metric.scenario)
        for target in others:
            figures = results[target].get(metric.scenario)
            if metric.show is None and figures and reference and "error" not in figures and "error" not in reference:
                row.append(_ratio(metric.value(figures), metric.value(reference)))
            else:
                row.append("")
        rows.append(row)
    return header, rows


def cpu_rows(results: Results) -> tuple[list[str], list[list[str]]]:
    """Who was busy: server, generator and other CPU (% of one core) while each scenario measured."""
    targets = list(results)
    scenarios = list(dict.fromkeys(s for t in targets for s in results[t]))
    rows = []
    for scenario in scenarios:
        row = [scenario]
        for target in targets:
            figures = results[target].get(scenario, {})
            server, generator = figures.get("server_cpu_percent"), figures.get("generator_cpu_percent")
            other = figures.get("other_cpu_percent")
            row.append("—" if generator is None else f"{_percent(server)} / {_percent(generator)} / {_percent(other)}")
        rows.append(row)
    return ["scenario: server / generator / other", *targets], rows


def contention_notes(results: Results, threshold: float = 20.0) -> list[str]:
    """Scenarios during which other processes took noticeable CPU: their figures are too low."""
    busy = [
        f"{target} {scenario} ({figures['other_cpu_percent']:.0f}%)"
        for target, scenarios in results.items()
        for scenario, figures in scenarios.items()
        if (figures.get("other_cpu_percent") or 0) > threshold
    ]
    if not busy:
        return []
    return [
        "the machine was not idle: other processes used CPU during " + ", ".join(busy) + "; those figures are too low"
    ]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}%"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table padded so that it also reads well in a terminal."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "| " + " | ".join("-" * w for w in widths) + " |", *(line(r) for r in rows)])


def markdown(document: dict[str, Any]) -> str:
    """``results.md``: command, machine, pinning, the tables and the targets' descriptions."""
    results: Results = document["results"]
    lines = [
        "# webchannel benchmark results",
        "",
        f"- command: `{document['command']}`",
        f"- date: {document['date']}",
        f"- machine: {document['machine_description']}",
        f"- pinning: {document['pinning']}",
        f"- event loop: {document['event_loop']}; messages of {document['sizes']['message_size']} bytes",
        f"- sizes: {document['sizes_description']}",
        "",
        markdown_table(*table_rows(results)),
        "",
        *(
            ["Ratios are the target's figure divided by Nchan's (mind each row's direction).", ""]
            if REFERENCE in results
            else []
        ),
        "## CPU while each scenario measured (% of one core)",
        "",
        markdown_table(*cpu_rows(results)),
        "",
        'A side near 100% was the limit; "other" is every other process on the machine (and should be',
        "near 0).",
        *(
            [
                "The `relay` column is a do-nothing Python relay on the server's core: a server figure",
                "close to the relay's was limited by the load generator, not by the server.",
            ]
            if "relay" in results
            else []
        ),
        "",
        "## Targets",
        "",
        *(f"- `{name}`: {description}" for name, description in document["targets"].items()),
    ]
    notes = document.get("notes") or []
    if notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def write_json(document: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")


def write_chart(results: Results, path: Path, title: str) -> str | None:
    """One bar subplot per charted metric; returns why it was skipped, or None when written."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed (pip install -r requirements-bench.txt): no results.png"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in METRICS if m.chart and any(m.scenario in r for r in results.values())]
    if not metrics:
        return "no charted metric in this run: no results.png"
    targets = list(results)
    colors = {"webchannel": "#2b6cb0", "webchannel-redis": "#63b3ed", "nchan": "#dd6b20", "relay": "#a0aec0"}
    columns = min(4, len(metrics))
    rows = -(-len(metrics) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), squeeze=False)
    for axis, metric in zip(axes.flat, metrics, strict=False):
        values = []
        for target in targets:
            figures = results[target].get(metric.scenario) or {}
            values.append(metric.value(figures) if "error" not in figures else None)
        heights = [v or 0 for v in values]
        bars = axis.bar(targets, heights, color=[colors.get(t, "#718096") for t in targets])
        for bar, value in zip(bars, values, strict=True):
            label = _number(value) if value is not None else "n/a"
            axis.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom")
        axis.set_title(f"{metric.label}\n({metric.better} is better)", fontsize=9)
        axis.tick_params(axis="x", labelrotation=20, labelsize=8)
        axis.margins(y=0.2)
    for axis in list(axes.flat)[len(metrics) :]:
        axis.set_visible(False)
    figure.suptitle(title, fontsize=9, wrap=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return None
