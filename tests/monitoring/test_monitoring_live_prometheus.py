"""Machinery test: a real Prometheus scraping the worker's real metric definitions.

This proves the harness (``monitoring.promserver``) and the queries against
``worker.metrics.Metrics`` as defined, served by ``monitoring.sample_exporter`` with sample
values; it does not run a worker. The demo-load version (real workers, a real confirmer, real
simulator traffic) is ``test_monitoring_demo_load.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from cancelq.confirmer.metrics import ConfirmerMetrics
from cancelq.confirmer.metrics import populate as populate_confirmer
from cancelq.worker.metrics import Metrics
from monitoring.promserver import (
    Prometheus,
    PrometheusError,
    evaluate,
    query,
    rules,
    running_prometheus,
    wait_for_scrapes,
)
from monitoring.queries import RULES_DIR, Query, all_queries, parse, to_promql
from monitoring.render_panels import render_panels
from monitoring.sample_exporter import populate, serve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def prometheus() -> Iterator[Prometheus]:
    """Prometheus (with the alert rules loaded) scraping a live sample exporter every second."""
    metrics = Metrics(CollectorRegistry())
    populate(metrics)
    populate_confirmer(ConfirmerMetrics(metrics.registry))  # the confirmer's, same target
    stop = threading.Event()
    traffic = threading.Thread(target=_keep_populating, args=(metrics, stop), daemon=True)
    traffic.start()
    try:
        with (
            serve(metrics) as target,
            running_prometheus(
                [target],
                rule_files=sorted(RULES_DIR.glob("*.yml")),
            ) as server,
        ):
            wait_for_scrapes(server.base_url, 1, scrapes=3)
            yield server
    finally:
        stop.set()
        traffic.join(timeout=5)


def _keep_populating(metrics: Metrics, stop: threading.Event) -> None:
    while not stop.wait(0.2):
        populate(metrics)


@pytest.mark.timeout(60)
def test_machinery_evaluates_every_query_against_the_real_metric_definitions(
    prometheus: Prometheus,
) -> None:
    queries = [Query(q.source, to_promql(q.expr)) for q in all_queries()]
    results = evaluate(prometheus.base_url, queries)
    assert set(results) == set(queries)
    series = query(prometheus.base_url, '{job="cancelq-worker"}')
    scraped = {r["metric"]["__name__"] for r in series}
    used = {m for q in queries for m in parse(q.expr).metrics}
    assert used - scraped == set(), "metrics used by queries but absent from the real scrape"


@pytest.mark.timeout(60)
def test_machinery_names_every_query_prometheus_refuses(prometheus: Prometheus) -> None:
    bad = [Query("typo", "sum(rate(cancelq_outcomes_total[5m])"), Query("ok", "up")]
    with pytest.raises(PrometheusError, match=r"typo: HTTP 400: .*parse error") as error:
        evaluate(prometheus.base_url, bad)
    assert "ok:" not in str(error.value)


@pytest.mark.timeout(60)
def test_every_alert_rule_evaluates_without_error_on_real_scrapes(prometheus: Prometheus) -> None:
    expected = {
        rule["alert"]
        for path in RULES_DIR.glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    }
    deadline = time.monotonic() + 20
    loaded = rules(prometheus.base_url)
    while any(r["health"] == "unknown" for r in loaded) and time.monotonic() < deadline:
        time.sleep(0.25)
        loaded = rules(prometheus.base_url)
    assert {r["name"] for r in loaded} == expected
    assert {r["name"]: r["lastError"] for r in loaded if r["health"] != "ok"} == {}


@pytest.mark.timeout(60)
def test_render_panels_draws_every_time_series_panel(
    prometheus: Prometheus,
    tmp_path: Path,
) -> None:
    rendered = render_panels(prometheus.base_url, tmp_path, window_s=60, step_s=1)
    assert len(rendered) >= 10
    for panel in rendered:
        assert panel.path.read_bytes().startswith(PNG_MAGIC), panel.title
        assert panel.series > 0, f"{panel.title}: no series from the real scrape"
    assert len({p.path for p in rendered}) == len(rendered)
