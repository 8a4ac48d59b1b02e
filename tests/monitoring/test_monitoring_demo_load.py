"""The monitoring against real traffic: a real Prometheus scraping real workers and a confirmer.

One demo-like load (``monitoring.demo_load``: 2 worker processes, a confirmer, the simulator, a
private Redis) is scraped every second by a throw-away Prometheus with the alert rules loaded.
Then every expression of the rules, the dashboard and the KEDA trigger goes through Prometheus'
HTTP API, the key series are checked against what the load did, and the panels are rendered.
``python -m monitoring.snapshot OUT_DIR`` runs the same code outside pytest.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitoring.demo_load import BURST_ACCOUNT
from monitoring.promserver import query, query_range, rules
from monitoring.queries import DASHBOARDS_DIR, all_queries, dashboard_queries, to_promql
from monitoring.snapshot import (
    MAIN_PANELS,
    RENDER_VARIABLES,
    Evaluation,
    Live,
    evaluate_everything,
    facts,
    live_load,
    render_main,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Conditions a healthy load must not meet: their expressions return nothing.
MUST_BE_QUIET = {
    "CancelqAuthFailure",
    "CancelqIpBanned",
    "CancelqRateLimited",
    "CancelqNoWorkerUp",
    "CancelqClockOffsetHigh",
    "CancelqQueueBacklogHigh",
}
#: Alerts with no `for:` that the load triggers on purpose (a kill, two dead letters).
MUST_FIRE = {"CancelqKillSwitchRun", "CancelqDeadLetters"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live_load(tmp_path_factory.mktemp("demo-load"), log=lambda _: None) as running:
        yield running


@pytest.fixture(scope="module")
def evaluation(live: Live) -> Evaluation:
    return evaluate_everything(live.prometheus.base_url)


def _alert(source: str) -> str | None:
    file, _, name = source.partition(": ")
    return name if file.endswith(".yml") else None


def test_every_expression_evaluates_and_names_only_metrics_the_targets_expose(
    evaluation: Evaluation,
) -> None:
    # evaluate_everything raised already if Prometheus refused any expression
    assert len(evaluation.results) == len(all_queries()) >= 40
    assert evaluation.unexposed == {}, evaluation.summary()
    assert {"cancelq_outcomes_total", "cancelq_confirmations_total"} <= evaluation.scraped


def test_every_dashboard_and_keda_expression_has_data_and_only_alerts_are_quiet(
    evaluation: Evaluation,
) -> None:
    quiet = evaluation.without_data()
    not_alerts = [q.source for q in quiet if _alert(q.source) is None]
    assert not_alerts == [], evaluation.summary()
    quiet_alerts = {_alert(q.source) for q in quiet}
    assert quiet_alerts >= MUST_BE_QUIET, evaluation.summary()
    assert not quiet_alerts & MUST_FIRE, evaluation.summary()


def test_alert_rules_are_healthy_and_the_triggered_ones_fire(live: Live) -> None:
    base = live.prometheus.base_url
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        firing = {s["metric"]["alertname"] for s in query(base, 'ALERTS{alertstate="firing"}')}
        if firing >= MUST_FIRE:
            break
        time.sleep(0.25)
    assert firing >= MUST_FIRE
    assert not firing & MUST_BE_QUIET
    loaded = rules(base)
    assert len(loaded) >= 12
    assert {r["name"]: r["lastError"] for r in loaded if r["health"] != "ok"} == {}


def test_the_key_series_carry_what_the_load_did(live: Live) -> None:
    found = facts(live.prometheus.base_url)
    codes = found["responses by ret_code"]
    assert codes["0"] > 100
    assert {c for c, n in codes.items() if c != "0" and n > 0} >= {"10016", "110001"}
    assert any(c.startswith("http_5") for c in codes)
    statuses = found["outcomes by status"]
    assert {"cancelled", "covered_by_kill", "duplicate", "rejected", "not_found", "killed"} <= {
        s for s, n in statuses.items() if n > 0
    }
    # every outcome the producer saw was counted once, by one worker
    assert statuses["covered_by_kill"] == live.load.outcomes["covered_by_kill"]
    assert sum(statuses.values()) - statuses["killed"] == live.load.requests
    assert found["batch requests (over 1 cancel)"]["total"] > 0
    assert found["cancels per exchange request"]["total"] > 1
    assert found["retries by reason"]["transient"] > 0
    assert found["dead letters by reason"] == {"not_json": 1, "bad_envelope": 1}
    kills = {account: n for account, n in found["kills by account"].items() if n}
    assert kills == {BURST_ACCOUNT.alias: 1}  # the other accounts' series exist at 0 (primed)
    assert found["max queue depth by queue"]["deferred"] > 0  # lanes parked cancels
    assert min(found["min rate-limit headroom by account"].values()) < 0.5
    via = found["confirmations by via"]
    assert via["stream"] > 0
    assert via["rest"] > 0  # the silent stream phase fell back to REST
    assert found["fallbacks by reason"]["late"] > 0
    assert sum(found["reconnects by account"].values()) > 0


def test_event_panels_show_a_counter_born_at_its_first_event(live: Live) -> None:
    """A kill is one increment of a brand-new series; plain increase() never sees it."""
    (expr,) = [
        q.expr
        for q in dashboard_queries(DASHBOARDS_DIR / "cancelq.json")
        if "cancelq_kills_total" in q.expr
    ]
    end = time.time()
    series = query_range(
        live.prometheus.base_url,
        to_promql(expr, RENDER_VARIABLES),
        live.load_started - 5,
        end,
        1.0,
    )
    peaks: dict[str, float] = {}
    for one in series:  # every account has a series per category (primed at 0): take the max
        account = one["metric"]["account"]
        peak = max(float(v) for _, v in one["values"])
        peaks[account] = max(peaks.get(account, 0.0), peak)
    # one kill shows as 1 (increase() extrapolates a little over its window: round)
    assert {account: round(peak) for account, peak in peaks.items() if peak} == {
        BURST_ACCOUNT.alias: 1
    }


def test_the_dashboard_panels_render_from_the_live_data(live: Live, tmp_path: Path) -> None:
    rendered = render_main(live, tmp_path, every_panel=True)
    assert len(rendered) >= 15
    for panel in rendered:
        assert panel.path.read_bytes().startswith(PNG_MAGIC), panel.title
        assert panel.series > 0, f"{panel.title}: no series from the live scrape"
    main = render_main(live, tmp_path / "main")
    assert [p.title for p in main] == list(MAIN_PANELS)
    assert all(p.path.stat().st_size > 10_000 for p in main)
