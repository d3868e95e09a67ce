"""The Grafana dashboard in helm/dashboards queries only metrics the hub and the agent expose.

The names are collected by scraping a real slice manager (the hub's default registry, as
/hub/metrics serves it) and a real agent, not from a list kept next to the dashboard.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from traitlets.config import Config

from gpu_fraction.agent.metrics import AgentMetrics
from gpu_fraction.model import Owner, SliceRequest
from spawner.manager import GPUSliceManager

DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "dashboards" / "ai-console.json"

#: Series names each family type exposes besides what its samples show.
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}
#: PromQL words that look like identifiers but name no metric.
KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}
LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*")


def exposed_names(text: str) -> set[str]:
    """Every series name a scrape of ``text`` offers a query."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(sample.name for sample in family.samples)
        if family.type in SUFFIXES:
            names.update(family.name + suffix for suffix in SUFFIXES[family.type])
        else:  # a gauge's (or untyped) series carry the family's name itself
            names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads, found roughly: strings, label matchers,
    ranges, grouping label lists and Grafana variables are cut out, then every identifier not
    called as a function and not a keyword is a metric."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = LABEL_LISTS.sub("", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)
    names = set()
    for match in IDENTIFIER.finditer(text):
        if text[match.end() :].lstrip().startswith("(") or match.group() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            # label_values(metric, label): the label is no metric
            match = re.fullmatch(r"label_values\(\s*(.+?)\s*,\s*\w+\s*\)", query)
            yield f"variable {variable['name']!r}", match.group(1) if match else query


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture
async def available() -> set[str]:
    """Names the hub (a manager holding a slice) and an agent actually expose."""
    GPUSliceManager.clear_instance()
    config = Config()
    config.GPUSliceManager.inventory_source = "simulated"
    config.GPUSliceManager.simulated_gpus = "RTX3090:24576x1"
    config.GPUSliceManager.project_quotas = {"cs101": "1"}
    manager = GPUSliceManager.instance(config=config)
    try:
        held = await manager.reserve(
            SliceRequest(gpu_type="RTX3090", fraction=Fraction(1, 4)),
            Owner("notebook", "alice", "cs101"),
        )
        manager.commit(held.id)
        hub = exposed_names(generate_latest(REGISTRY).decode())
        manager.release(held.id)
    finally:
        manager.close()
        GPUSliceManager.clear_instance()
    agent = exposed_names(AgentMetrics("node-a").render().decode())
    assert "ai_console_slices" in hub and "ai_console_gpu_memory_used_mib" in agent
    return hub | agent


def test_the_parser_finds_metrics_and_only_metrics() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{le!="1", node=~"$node"}'
        "[$__rate_interval]))) / on (project) group_left b_gauge * 60 > bool 1e3"
    )
    assert metric_names(expr) == {"a_bucket", "b_gauge"}
    assert metric_names("sum(x_total) without (node)") == {"x_total"}


async def test_every_query_names_only_exposed_metrics(
    dashboard: dict[str, Any], available: set[str]
) -> None:
    found = list(queries(dashboard))
    assert len(found) >= 10
    for where, expr in found:
        names = metric_names(expr)
        assert names, f"{where} reads no metric: {expr}"
        missing = names - available
        assert not missing, f"{where} queries {sorted(missing)}, which nothing exposes"


async def test_every_hub_and_agent_metric_family_has_a_panel(
    dashboard: dict[str, Any], available: set[str]
) -> None:
    used = set().union(*(metric_names(expr) for _, expr in queries(dashboard)))
    wanted = {
        "ai_console_slices",
        "ai_console_gpu_capacity",
        "ai_console_gpu_free",
        "ai_console_allocation_seconds_bucket",
        "ai_console_refusals_total",
        "ai_console_project_gpu_quota",
        "ai_console_project_gpu_in_use",
        "ai_console_gpu_utilization_percent",
        "ai_console_slice_memory_limit_mib",
        "ai_console_process_gpu_memory_mib",
    }
    assert wanted <= available  # the names the panels are about exist at all
    assert wanted <= used


def test_the_dashboard_is_a_grafana_dashboard_on_a_chosen_prometheus(
    dashboard: dict[str, Any],
) -> None:
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"] and dashboard["title"]
    [source] = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
