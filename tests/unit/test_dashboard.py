"""The Grafana dashboard asks only for metrics the operator exports: every PromQL query's
metric names are checked against the names registered in jibri_operator.metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from deploy import CHART

from jibri_operator import metrics

DASHBOARD = CHART / "dashboards" / "jibri-operator.json"

# PromQL words that are not metric names: aggregations, modifiers, set operators.
KEYWORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "limitk", "limit_ratio", "by", "without", "on", "ignoring",
    "group_left", "group_right", "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan",
}  # fmt: skip
# Series a metric family exposes, by its type (prometheus_client's naming).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "unknown": ("",),
}


def exported_series() -> dict[str, set[str]]:
    """Every series name the operator can export, with its label names."""
    series: dict[str, set[str]] = {}
    # The registry keeps its collectors (and they their label names) in private attributes only.
    for collector in list(metrics.REGISTRY._collector_to_names):
        for family in collector.describe():
            labels = set(getattr(collector, "_labelnames", ()))
            for suffix in SUFFIXES[family.type]:
                series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression (or a Grafana label_values() query)."""
    values = re.fullmatch(
        r"\s*label_values\(\s*(?:([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?\s*,)?\s*\w+\s*\)\s*", expr
    )
    if values:
        return {values.group(1)} if values.group(1) else set()
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word in KEYWORDS or re.fullmatch(r"\d+(\.\d+)?([eE]\d+)?|\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def label_names(expr: str) -> set[str]:
    """Label names the expression filters or groups by."""
    names: set[str] = set()
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        names |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    for grouping in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        names |= {name.strip() for name in grouping.split(",") if name.strip()}
    return names


def queries(node: Any) -> Iterator[tuple[str, str]]:
    """(where, query) for every PromQL expression in the dashboard: panel targets and variables."""
    if isinstance(node, dict):
        title = str(node.get("title") or node.get("name") or "")
        if isinstance(node.get("expr"), str):
            yield title, node["expr"]
        if node.get("type") == "query":  # a templating variable
            query = node.get("query")
            yield title, query["query"] if isinstance(query, dict) else str(query)
        for value in node.values():
            yield from queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from queries(item)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_the_extractor_reads_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{ns=~"$ns", x="b c"}[$__rate_interval])))'
        " / on(ns) group_left max without (pod) (b_total offset 5m) > bool 0"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total"}
    assert label_names(expr) == {"le", "ns", "x", "pod"}
    assert metric_names("label_values(c_info{ns='a'}, environment)") == {"c_info"}
    assert metric_names("sum(rate(jibri_operator_jibris[5m])) * 60") == {"jibri_operator_jibris"}


def test_every_query_names_only_exported_metrics_and_their_labels(dashboard: dict[str, Any]) -> None:
    exported = exported_series()
    assert "jibri_operator_session_phase_transitions_total" in exported  # the registry was read
    found = list(queries(dashboard))
    assert len(found) >= 10
    for where, expr in found:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in names:
            assert name in exported, f"{where}: {name} is not exported by jibri_operator.metrics ({expr})"
        allowed = set().union(*(exported[name] for name in names))
        unknown = label_names(expr) - allowed
        assert not unknown, f"{where}: labels {unknown} are not on {names}"


def test_the_panels_cover_what_an_operator_on_call_needs(dashboard: dict[str, Any]) -> None:
    exprs = " ".join(expr for _, expr in queries(dashboard))
    for wanted in [
        "jibri_operator_session_phase_transitions_total",  # sessions by phase
        "jibri_operator_assign_seconds_bucket",  # time to start
        "jibri_operator_busy_retries_total",  # busy retries
        "jibri_operator_sessions",  # sessions by phase, now
        "jibri_operator_time_to_recording_seconds_bucket",  # time to Recording
        "jibri_operator_pool_pods",  # Jibris by state per pool
        "jibri_operator_scale_decisions_total",  # scale decisions by reason
        "jibri_operator_api_errors_total",  # API errors by verb
        "jibri_operator_jibris",  # Jibris by state per environment
        "jibri_operator_waiting_sessions",
        "jibri_operator_start_answers_total",
        "jibri_operator_brewery_joined",
        "jibri_operator_brewery_reconnects_total",
    ]:
        assert wanted in exprs, wanted
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_every_exported_metric_is_on_the_dashboard(dashboard: dict[str, Any]) -> None:
    """A metric nobody graphs is easy to miss."""
    families = {name.removesuffix("_total") for name in exported_series() if not name.endswith("_created")}
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in families}
    exprs = " ".join(expr for _, expr in queries(dashboard))
    missing = sorted(family for family in families if family not in exprs)
    assert not missing, f"metrics not on the dashboard: {missing}"
