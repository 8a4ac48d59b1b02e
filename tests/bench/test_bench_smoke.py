"""The bench machinery end to end, tiny: private Redis, simulator, 2 cancelq workers and the
Celery-rate_limit baseline, one never-over run of a few cancels, its table and RESULTS file."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from bench import load
from bench.context import QUICK, Context, Sizes, make_bench_keys
from bench.measure import Results, Spread, percentile
from bench.report import write_markdown
from bench.scenarios import never_over
from bench.stack import SetSpec, Stack

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


@pytest.mark.timeout(60)
def test_worker_set_is_killed_on_exit_and_reset_sim_keeps_redis(tmp_path: Path) -> None:
    """Sets are killed, not stopped, when their block ends (every process of the tree, pool
    children included); ``reset_sim`` between two phases of one set leaves Redis alone."""
    keys = make_bench_keys(many=2)
    with Stack(tmp_path, keys.all()) as stack:
        stack.reset(rate_limits=False)
        with stack.workers("floor", 1, ("--pool", "prefork", "--concurrency", "2")) as ws:
            tree = ws.tree()
            assert len(tree) >= 3  # the worker and its two pool children
            stack.redis.set("phase-one", "1")
            stack.reset_sim(rate_limits=False)
            assert stack.redis.get("phase-one") == b"1"
        for proc in tree:
            assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
        assert stack.redis.dbsize() == 0  # flushed after the set


@pytest.mark.timeout(90)
def test_standby_set_waits_frozen_on_its_database_then_is_adopted(tmp_path: Path) -> None:
    """A standby set is frozen while another set runs, takes nothing from database 0, and is
    the very set a later ``workers`` call with the same arguments gets, on its own database."""
    keys = make_bench_keys(many=2)
    pool = ("--pool", "prefork", "--concurrency", "2")
    spec = SetSpec.of("naive", 1, pool)
    with Stack(tmp_path, keys.all()) as stack, stack.standby([spec]):
        waiting = stack._standby[spec].ws  # the set under test
        stack.reset(rate_limits=False)
        with stack.workers("floor", 1, pool):
            assert {p.status() for p in waiting.tree()} == {psutil.STATUS_STOPPED}
            offered = load.burst(stack, [(keys.free, link) for link in ("f1", "f2", "f3")])
            assert len(load.wait_outcomes(stack, offered, 20)) == 3
        stack.reset(rate_limits=False)
        links = load.place_orders(stack, keys.free, 3)
        with stack.workers("naive", 1, pool) as ws:
            assert ws is waiting
            assert stack.redis.connection_pool.connection_kwargs["db"] != 0
            offered = load.burst(stack, [(keys.free, link) for link in links])
            outcomes = load.wait_outcomes(stack, offered, 20)
            assert [o["retCode"] for o in outcomes.values()] == [0, 0, 0]
        assert stack.redis.connection_pool.connection_kwargs["db"] == 0
        assert not stack._standby
