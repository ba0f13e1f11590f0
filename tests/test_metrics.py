"""The metrics' declarations (serve_app/metrics.py) and the Grafana dashboard that draws them
(deploy/grafana/whisper-serve.json): the dashboard loads, queries only names the service
exports, and draws every one of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from serve_app.metrics import METRICS, PROMETHEUS_PREFIX, SERVE_METRICS, exported_names

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "whisper-serve.json"
METRIC_NAME = re.compile(rf"\b{PROMETHEUS_PREFIX}[a-zA-Z0-9_:]+")
RESERVED_TAGS = {"application", "deployment", "replica"}  # Ray Serve adds these to every series


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def test_each_metric_is_declared_once_as_ray_takes_it() -> None:
    names = [metric.name for metric in METRICS]
    assert len(names) == len(set(names))
    for metric in METRICS:
        assert metric.name.startswith("whisper_") and metric.description
        assert not RESERVED_TAGS & set(metric.tags), metric.name
        if metric.kind == "histogram":
            assert metric.boundaries and all(b > 0 for b in metric.boundaries), metric.name
            assert list(metric.boundaries) == sorted(set(metric.boundaries)), metric.name
        else:
            assert metric.boundaries == (), metric.name


def test_the_dashboard_is_grafana_json_on_a_prometheus_datasource_variable() -> None:
    board = dashboard()
    assert board["title"] and board["uid"]
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert panels()
    for panel in panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


@pytest.mark.parametrize("query", queries())
def test_every_query_names_only_metrics_the_service_exports(query: str) -> None:
    named = set(METRIC_NAME.findall(query))
    assert named, f"no metric in {query}"
    assert named <= exported_names(), f"not exported: {sorted(named - exported_names())}"


def test_the_variables_query_exported_metrics_too() -> None:
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            assert set(METRIC_NAME.findall(variable["definition"])) <= exported_names()


def test_the_dashboard_draws_every_metric() -> None:
    drawn = {name for query in queries() for name in METRIC_NAME.findall(query)}
    for metric in METRICS:
        assert drawn & set(metric.exported), f"no panel draws {metric.name}"
    assert set(SERVE_METRICS) <= drawn
