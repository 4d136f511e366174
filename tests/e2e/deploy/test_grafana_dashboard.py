"""``deploy/grafana/webchannel.json``: a Grafana dashboard of the expected shape whose every query
names only metrics that a real server's ``/metrics`` exposes."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.e2e.helpers import (
    closed_with,
    create_channel,
    http_client,
    metrics_text,
    publish,
    recv_binary,
    subscribe,
    websocket_handshake,
)
from tests.harness import REPO, ServerProcess

DASHBOARD = REPO / "deploy" / "grafana" / "webchannel.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# PromQL words that look like metric names: operators and modifiers (functions are followed by "(").
KEYWORDS = {"and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def expressions() -> list[str]:
    return [target["expr"] for panel in dashboard()["panels"] for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges ([$__rate_interval])
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    words = re.finditer(r"(?<![\w$.:])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", expr)
    return {match.group(1) for match in words} - KEYWORDS


def test_metric_names_are_read_from_promql():
    expr = 'histogram_quantile(0.9, sum by (le) (rate(a_bucket{x="y z"}[$__rate_interval]))) / on (i) b_total'
    assert metric_names(expr) == {"a_bucket", "b_total"}


def test_the_dashboard_is_valid_json_of_grafanas_shape():
    board = dashboard()
    assert board["title"] == "webchannel"
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
    assert isinstance(board["schemaVersion"], int)
    (variable,) = board["templating"]["list"]
    assert (variable["type"], variable["name"], variable["query"]) == ("datasource", "datasource", "prometheus")
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["type"] == "timeseries"
        assert panel["title"]
        assert panel["datasource"] == DATASOURCE
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE
            expr = target["expr"]
            assert expr.count("(") == expr.count(")"), expr
            assert expr.count("[") == expr.count("]"), expr
            assert metric_names(expr), expr


def test_the_dashboard_shows_what_operators_need():
    joined = "\n".join(expressions())
    for needed in [
        "rate(webchannel_messages_published_total[",
        "rate(webchannel_messages_sent_total[",
        "sum(webchannel_users_connected)",
        "histogram_quantile(0.99, sum by (le) (rate(webchannel_delivery_lag_seconds_bucket[",
        "sum by (code) (rate(webchannel_websocket_closed_total[",
        "sum by (reason) (rate(webchannel_websocket_refused_total[",
        'django_http_responses_total_by_status_view_method_total{status=~"5.."}',
    ]:
        assert needed in joined, needed


def scraped(text: str) -> tuple[set[str], dict[str, str]]:
    """Sample names and ``# TYPE`` of each family in a Prometheus text exposition."""
    samples = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    return samples, types


def exposed(name: str, samples: set[str], types: dict[str, str]) -> bool:
    """``name`` is a sample of the scrape; a histogram's ``_bucket``/``_sum``/``_count`` belongs to a histogram."""
    if name not in samples:
        return False
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in types:
            return types[name.removesuffix(suffix)] == "histogram"
    return True


async def test_every_metric_the_dashboard_queries_is_on_a_live_metrics_page(shared_server: ServerProcess):
    # So that the labelled series exist: one publish delivered, one refusal, one close by the server.
    channel_id, token = create_channel(shared_server.url)
    async with subscribe(shared_server.url, channel_id, token) as ws:
        async with http_client() as client:
            response = await publish(client, shared_server.url, channel_id, b"x", token=token)
            assert response.status_code == 204
        assert await recv_binary(ws) == b"x"
        await ws.send(b"not allowed")  # subscribers are receive-only: closed with 4003
        assert await closed_with(ws) == 4003
    assert websocket_handshake(shared_server.url, f"/webchannel/v1/channels/{channel_id}?access_token=bad") == 403
    samples, types = scraped(metrics_text(shared_server.url))
    missing = sorted(name for expr in expressions() for name in metric_names(expr) if not exposed(name, samples, types))
    assert not missing, f"queried by deploy/grafana/webchannel.json but not on /metrics: {missing}"
