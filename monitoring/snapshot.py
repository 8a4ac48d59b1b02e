"""Demo load -> real Prometheus -> every query evaluated -> dashboard panels as PNG.

::

    python -m monitoring.snapshot OUT_DIR            # the main panels (4 PNGs)
    python -m monitoring.snapshot OUT_DIR --all      # every time-series panel

Starts a local stack (``monitoring.demo_load``: Redis, simulator, 2 workers, a confirmer) and a
throw-away Prometheus scraping every worker and the confirmer each second with the alert rules
loaded, drives the demo load, evaluates every expression of the rules, the dashboard and the KEDA
trigger through Prometheus' HTTP API, prints what had data, and renders the panels from that
data. Takes about 40 s; binds 127.0.0.1 only; stops everything it started. Exit 1 when an
expression fails or names a metric no target exposed. The test
``tests/monitoring/test_monitoring_demo_load.py`` runs the same code.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitoring.demo_load import (
    ACCOUNTS,
    CONFIRMER_JOB,
    TARGET_LABELS,
    WORKER_JOB,
    DemoStack,
    LoadReport,
    demo_stack,
    drive_load,
)
from monitoring.promserver import (
    Prometheus,
    ScrapeJob,
    evaluate,
    query,
    running_prometheus,
    scraped_metric_names,
    wait_for,
    wait_for_scrapes,
    wait_for_scrapes_after,
)
from monitoring.queries import GRAFANA_DEFAULTS, RULES_DIR, Query, all_queries, parse, to_promql
from monitoring.render_panels import RenderedPanel, render_panels

#: The panels worth a picture in the repository (monitoring/panels/).
MAIN_PANELS = (
    "End-to-end latency",
    "Exchange responses by retCode",
    "Outcomes by status",
    "Queue depth",
)
#: What Grafana would use for ``$__rate_interval`` at a 1 s scrape interval (4 x scrape).
RENDER_VARIABLES = {**GRAFANA_DEFAULTS, "__rate_interval": "4s"}


@dataclass
class Live:
    """A finished load with Prometheus still running and holding all of it."""

    prometheus: Prometheus
    stack: DemoStack
    load: LoadReport
    load_started: float  # Unix time
    load_ended: float


@dataclass
class Evaluation:
    """Every expression's result at one instant, and what it says about the metrics."""

    results: dict[Query, list[dict[str, Any]]]
    scraped: set[str]  # metric names the targets exposed
    unexposed: dict[str, frozenset[str]] = field(default_factory=dict)  # source -> metrics

    def without_data(self) -> list[Query]:
        """Expressions that returned nothing or only NaN (an alert not firing, mostly)."""
        return [q for q, series in self.results.items() if not _has_value(series)]

    def summary(self) -> str:
        empty = self.without_data()
        lines = [
            f"{len(self.results)} expressions evaluated, "
            f"{len(self.results) - len(empty)} with data, {len(empty)} without:"
        ]
        lines += [f"  no data: {q.source}" for q in empty]
        lines += [f"  NOT EXPOSED: {src}: {sorted(m)}" for src, m in self.unexposed.items()]
        return "\n".join(lines)


def _has_value(series: Sequence[Mapping[str, Any]]) -> bool:
    for s in series:
        value = s.get("value", [0, "NaN"])[1]
        if not math.isnan(float(value)):
            return True
    return False


@contextmanager
def live_load(workdir: Path, *, seed: int = 1, log: Any = print) -> Iterator[Live]:
    """Stack + Prometheus (1 s scrapes, alert rules loaded); the load done and scraped."""
    with demo_stack(workdir) as stack:
        targets = len(stack.worker_targets) + 1
        log(f"stack up: workers {stack.worker_targets}, confirmer {stack.confirmer_target}")
        with running_prometheus(
            stack.worker_targets,
            job=WORKER_JOB,
            labels=TARGET_LABELS,
            extra_jobs=[ScrapeJob(CONFIRMER_JOB, [stack.confirmer_target], TARGET_LABELS)],
            scrape_interval_s=1.0,
            rule_files=sorted(RULES_DIR.glob("*.yml")),
        ) as prometheus:
            wait_for_scrapes(prometheus.base_url, targets, scrapes=2)
            wait_for(  # every account's private stream owned and up before the load
                prometheus.base_url,
                f"count(cancelq_confirm_stream_up == 1) >= {len(ACCOUNTS)}",
            )
            started = time.time()
            load = drive_load(stack, seed=seed)
            ended = time.time()
            log(f"load done in {ended - started:.1f} s: {load.summary()}")
            wait_for(prometheus.base_url, "max(cancelq_confirm_pending) == 0", timeout_s=40)
            wait_for_scrapes_after(prometheus.base_url, targets, time.time() + 0.5)
            yield Live(prometheus, stack, load, started, ended)


def evaluate_everything(base_url: str) -> Evaluation:
    """Every rule, dashboard and KEDA expression through the HTTP API (raises naming every
    expression Prometheus refuses), and the metrics each names that no target exposed."""
    queries = [Query(q.source, to_promql(q.expr)) for q in all_queries()]
    results = evaluate(base_url, queries)
    scraped = scraped_metric_names(base_url, [WORKER_JOB, CONFIRMER_JOB])
    own = {"up", "ALERTS", "ALERTS_FOR_STATE"}  # Prometheus' own series
    unexposed = {
        q.source: missing for q in queries if (missing := parse(q.expr).metrics - scraped - own)
    }
    return Evaluation(results, scraped, unexposed)


def facts(base_url: str) -> dict[str, dict[str, float]]:
    """The key series as totals, for assertions and the printed summary."""
    grouped = {
        "responses by ret_code": "sum by (ret_code) (cancelq_exchange_responses_total)",
        "outcomes by status": "sum by (status) (cancelq_outcomes_total)",
        "retries by reason": "sum by (reason) (cancelq_retries_total)",
        "confirmations by via": "sum by (via) (cancelq_confirmations_total)",
        "fallbacks by reason": "sum by (reason) (cancelq_confirm_fallbacks_total)",
        "dead letters by reason": "sum by (reason) (cancelq_dead_letters_total)",
        "kills by account": "sum by (account) (cancelq_kills_total)",
        "batch requests (over 1 cancel)": "sum(cancelq_batch_size_count) "
        r"- sum(cancelq_batch_size_bucket{le=~`1(\.0)?`})",
        "cancels per exchange request": "sum(cancelq_batch_size_sum) "
        "/ sum(cancelq_batch_size_count)",
        "max queue depth by queue": "max by (queue) (max_over_time(cancelq_queue_depth[10m]))",
        "min rate-limit headroom by account": "min by (account) (min_over_time("
        "(cancelq_ratelimit_remaining / cancelq_ratelimit_limit)[10m:1s]))",
        "reconnects by account": "sum by (account) (cancelq_confirm_stream_reconnects_total)",
        "firing alerts": 'count by (alertname) (ALERTS{alertstate="firing"})',
    }
    found: dict[str, dict[str, float]] = {}
    for name, expr in grouped.items():
        found[name] = {
            "|".join(s["metric"].values()) or "total": float(s["value"][1])
            for s in query(base_url, expr)
        }
    return found


def render_main(live: Live, out_dir: Path, *, every_panel: bool = False) -> list[RenderedPanel]:
    """The main panels (or every time-series panel) over the load window, 1 s resolution."""
    start = live.load_started - 5
    end = time.time()
    return render_panels(
        live.prometheus.base_url,
        out_dir,
        window_s=end - start,
        step_s=1.0,
        end=end,
        variables=RENDER_VARIABLES,
        titles=None if every_panel else MAIN_PANELS,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.snapshot",
        description="Demo load on a local stack, scraped by a real Prometheus; every query "
        "evaluated; dashboard panels rendered to PNG.",
    )
    parser.add_argument("out_dir", type=Path, help="where the PNGs go")
    parser.add_argument("--all", action="store_true", help="every time-series panel")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="cancelq-snapshot-") as tmp,
        live_load(Path(tmp), seed=args.seed) as live,
    ):
        evaluation = evaluate_everything(live.prometheus.base_url)
        print(evaluation.summary())
        for name, values in facts(live.prometheus.base_url).items():
            print(f"{name}: { {k: round(v, 3) for k, v in sorted(values.items())} }")
        for panel in render_main(live, args.out_dir, every_panel=args.all):
            print(f"{panel.path}  ({panel.series} series)")
    return 1 if evaluation.unexposed else 0


if __name__ == "__main__":
    sys.exit(main())
