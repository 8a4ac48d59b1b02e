"""The bench machinery end to end, tiny: private Redis, simulator, 2 cancelq workers and the
Celery-rate_limit baseline, one never-over run of a few cancels, its table and RESULTS file."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.context import QUICK, Context, Sizes, make_bench_keys
from bench.measure import Results, Spread, percentile
from bench.report import write_markdown
from bench.scenarios import never_over
from bench.stack import Stack

pytestmark = pytest.mark.integration

TINY = Sizes(**{**QUICK.__dict__, "name": "smoke", "never_over_n": 30, "pads": (30,)})


def test_percentile_and_spread() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    spread = Spread.of_repeats([3.0, 1.0, 2.0])
    assert (spread.median, spread.low, spread.high) == (2.0, 1.0, 3.0)


@pytest.mark.timeout(60)
def test_never_over_tiny_run_end_to_end(tmp_path: Path) -> None:
    keys = make_bench_keys(many=2)
    results = Results()
    with Stack(tmp_path, keys.all()) as stack:
        never_over.run(Context(stack, TINY, results, keys, lambda _: None))
    by_name = {f.name: f for f in results.figures}
    window = by_name["1. most cancels in any 1 s window (limit 20)"]
    assert window.value.median == 20  # 30 offered at once: the first window fills exactly
    assert window.met is True
    assert window.baseline is not None
    assert window.baseline.median > 20  # 4 nodes, each 20/s
    assert by_name["1. 10006 replies"].value.median == 0
    out = tmp_path / "RESULTS.md"
    write_markdown(results, out, ["cancelq", "bench", "--smoke"], ["machine: test"], 1.0)
    assert "| issue 4 | 1. most cancels in any 1 s window" in out.read_text()
