"""Every PromQL expression of the operator side uses only metrics and labels the worker defines.

Expressions come from the alert rules, the Grafana dashboards and the KEDA ScaledObject
(``monitoring.queries.all_queries``); the truth is ``worker.metrics.Metrics`` and
``confirmer.metrics.ConfirmerMetrics`` in a private registry, as a real worker and a real
confirmer expose them (counters with ``_total``, histograms with ``_bucket``/``_sum``/``_count``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from cancelq.confirmer.metrics import ConfirmerMetrics
from cancelq.confirmer.metrics import populate as populate_confirmer
from cancelq.worker.dead_letters import Reason
from cancelq.worker.metrics import Metrics
from monitoring.queries import Query, all_queries, parse, to_promql
from monitoring.sample_exporter import populate

#: Labels Prometheus attaches to every scraped series, and its own per-target metric.
TARGET_LABELS = frozenset({"instance", "job"})
#: Target labels the Prometheus Operator adds in Kubernetes (for the KEDA query only).
K8S_TARGET_LABELS = frozenset({"namespace", "pod", "service", "endpoint", "container"})
PROMETHEUS_SERIES = {"up": TARGET_LABELS}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}
QUERIES = all_queries()


def _registry(*, touched: bool) -> CollectorRegistry:
    """Every metric source in one registry: the worker's and the confirmer's."""
    registry = CollectorRegistry()
    metrics, confirmer = Metrics(registry), ConfirmerMetrics(registry)
    if touched:
        populate(metrics)
        populate_confirmer(confirmer)
    return registry


def _derived_names(registry: CollectorRegistry) -> set[str]:
    """Exposed sample names derived from metric family types alone."""
    return {
        family.name + suffix for family in registry.collect() for suffix in SUFFIXES[family.type]
    }


def _exposed_series() -> dict[str, frozenset[str]]:
    """Sample name -> label names, from a registry where every metric was touched."""
    series: dict[str, set[str]] = {}
    for family in _registry(touched=True).collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    exposed = {name: frozenset(labels) | TARGET_LABELS for name, labels in series.items()}
    return exposed | PROMETHEUS_SERIES


EXPOSED = _exposed_series()


@pytest.mark.timeout(10)
def test_derived_names_are_the_names_a_touched_registry_exposes() -> None:
    assert _derived_names(_registry(touched=False)) == set(EXPOSED) - set(PROMETHEUS_SERIES)
    assert "cancelq_kills_total" in EXPOSED
    assert "cancelq_end_to_end_seconds_bucket" in EXPOSED
    assert "le" in EXPOSED["cancelq_end_to_end_seconds_bucket"]


@pytest.mark.timeout(10)
def test_the_sample_exporter_touches_every_metric() -> None:
    untouched = [f.name for f in _registry(touched=True).collect() if not f.samples]
    assert untouched == []


@pytest.mark.timeout(10)
def test_queries_are_found_in_rules_dashboards_and_the_scaledobject() -> None:
    sources = {q.source.split(":")[0] for q in QUERIES}
    assert {"cancelq-alerts.yml", "cancelq.json", "scaledobject.yaml"} <= sources
    assert len(QUERIES) >= 30


@pytest.mark.timeout(10)
@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.source)
def test_every_metric_and_label_used_is_exposed(query: Query) -> None:
    parsed = parse(to_promql(query.expr))
    extra = K8S_TARGET_LABELS if query.source.startswith("scaledobject") else frozenset()
    assert parsed.selectors, "an expression without any metric"
    for selector in parsed.selectors:
        assert selector.metric in EXPOSED, f"{selector.metric} is not exposed by any worker"
        unknown = selector.labels - EXPOSED[selector.metric] - extra
        assert unknown == set(), f"{selector.metric} has no label(s) {sorted(unknown)}"
    available = frozenset().union(*(EXPOSED[m] for m in parsed.metrics))
    unknown = parsed.grouping_labels - available
    assert unknown == set(), f"grouping by label(s) no metric here has: {sorted(unknown)}"


@pytest.mark.timeout(10)
def test_the_dashboard_shows_every_metric_the_worker_defines() -> None:
    used = {
        _family(m)
        for q in QUERIES
        if q.source.split(":")[0].endswith(".json")
        for m in parse(to_promql(q.expr)).metrics
    }
    families = {f.name for f in _registry(touched=False).collect()}
    assert families - used == set()


#: The bounded ``reason`` label of ``cancelq_dead_letters_total``: a new reason is added here and
#: to the runbook on purpose, never by a message.
DEAD_LETTER_REASONS = {
    "not_json",
    "bad_envelope",
    "too_large",
    "decode_error",
    "content_disallowed",
    "unknown_task",
    "unknown_message",
    "bad_body",
    "invalid_task",
    "protocol_v1",
}
RUNBOOK = Path(__file__).resolve().parents[2] / "monitoring" / "README.md"


@pytest.mark.timeout(10)
def test_dead_letter_reasons_are_the_bounded_set_the_runbook_explains() -> None:
    assert {reason.value for reason in Reason} == DEAD_LETTER_REASONS
    runbook = RUNBOOK.read_text(encoding="utf-8").split("### CancelqDeadLetters", 1)[1]
    runbook = runbook.split("\n### ", 1)[0]
    missing = sorted(r for r in DEAD_LETTER_REASONS if f"| `{r}` |" not in runbook)
    assert missing == [], f"the CancelqDeadLetters runbook does not explain {missing}"


def _family(sample_name: str) -> str:
    for suffix in ("_total", "_bucket", "_sum", "_count", "_created"):
        if sample_name.endswith(suffix):
            return sample_name.removesuffix(suffix)
    return sample_name


# --- the PromQL reader itself -----------------------------------------------------------------


@pytest.mark.timeout(10)
def test_parse_finds_selectors_labels_and_grouping() -> None:
    parsed = parse(
        'sum by (account, le) (rate(a_bucket{account=~"x", le!="+Inf"}[5m] offset 1h))'
        ' / ignoring (ret_code) group_left b_total{ret_code="10006"} > bool 0.5'
    )
    assert [s.metric for s in parsed.selectors] == ["a_bucket", "b_total"]
    assert parsed.selectors[0].labels == {"account", "le"}
    assert parsed.selectors[1].labels == {"ret_code"}
    assert parsed.grouping_labels == {"account", "le", "ret_code"}


@pytest.mark.timeout(10)
def test_parse_ignores_functions_keywords_durations_subqueries_and_strings() -> None:
    parsed = parse(
        'deriv(sum(max by (q) (depth))[10m:30s]) > 1e3 and on() absent(up{job="a b"})'
        ' or label_replace(x, "dst", "$1", "src", "(.*)") unless y offset 5m'
    )
    assert [s.metric for s in parsed.selectors] == ["depth", "up", "x", "y"]


@pytest.mark.timeout(10)
def test_parse_rejects_a_selector_without_a_metric_name() -> None:
    with pytest.raises(ValueError, match="without a metric name"):
        parse('{__name__="x"}')


@pytest.mark.timeout(10)
def test_to_promql_substitutes_variables_and_expands_label_values() -> None:
    assert to_promql('rate(x{a=~"$account"}[$__rate_interval])') == 'rate(x{a=~".*"}[1m])'
    assert to_promql('x{a="${account}"}', {"account": "main"}) == 'x{a="main"}'
    assert to_promql("label_values(cancelq_outcomes_total, account)") == (
        "count by (account) (cancelq_outcomes_total)"
    )
    with pytest.raises(ValueError, match=r"\$pod"):
        to_promql('x{pod="$pod"}')
