"""The Grafana dashboard and its provisioning, and the Kubernetes copy of the alert rules."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from monitoring.k8s_rules import prometheus_rule
from monitoring.queries import DASHBOARDS_DIR, REPO_ROOT

DASHBOARD = json.loads((DASHBOARDS_DIR / "cancelq.json").read_text())
PROVISIONING = REPO_ROOT / "monitoring" / "grafana" / "provisioning"


def _panels() -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for panel in DASHBOARD["panels"]:
        flat.append(panel)
        flat.extend(panel.get("panels", []))
    return flat


@pytest.mark.timeout(10)
def test_dashboard_has_the_main_operator_panels() -> None:
    titles = {p["title"] for p in _panels()}
    assert {
        "End-to-end latency",
        "Throughput",
        "Exchange responses by retCode",
        "Outcomes by status",
        "Rate-limit headroom per account",
        "Queue depth",
        "Workers",
    } <= titles
    (latency,) = [p for p in _panels() if p["title"] == "End-to-end latency"]
    assert [t["legendFormat"] for t in latency["targets"]] == ["p50", "p90", "p99"]


@pytest.mark.timeout(10)
def test_panels_have_unique_ids_and_refids_and_do_not_overlap() -> None:
    panels = _panels()
    assert len({p["id"] for p in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(set(refs)) == len(refs), panel["title"]
        g = panel["gridPos"]
        xs, ys = range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])
        area = {(x, y) for x in xs for y in ys}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        assert g["x"] + g["w"] <= 24
        cells |= area


@pytest.mark.timeout(10)
def test_every_panel_uses_the_provisioned_datasource() -> None:
    (datasource,) = yaml.safe_load((PROVISIONING / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    for panel in _panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": datasource["uid"]}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


@pytest.mark.timeout(10)
def test_account_variable_filters_account_labelled_panels() -> None:
    (variable,) = DASHBOARD["templating"]["list"]
    assert variable["name"] == "account"
    assert variable["includeAll"]
    assert variable["allValue"] == ".*"
    for panel in _panels():
        for target in panel.get("targets", []):
            if "cancelq_outcomes_total" in target["expr"]:
                assert 'account=~"$account"' in target["expr"], panel["title"]


@pytest.mark.timeout(10)
def test_kubernetes_prometheusrule_is_generated_from_the_tested_rules() -> None:
    committed = (REPO_ROOT / "deploy/k8s/prometheusrule.yaml").read_text()
    assert committed == prometheus_rule(), (
        "stale: python -m monitoring.k8s_rules > deploy/k8s/prometheusrule.yaml"
    )
    source = yaml.safe_load((REPO_ROOT / "monitoring/rules/cancelq-alerts.yml").read_text())
    assert yaml.safe_load(committed)["spec"]["groups"] == source["groups"]
