"""bench.capacity: the fleet model from a run's figures."""

from __future__ import annotations

from bench.capacity import (
    FLEET_IDLE_PREFIX,
    IDLE_FIGURE,
    REDIS_CPU_PREFIX,
    WORKER_CPU_FIGURE,
    model,
)
from bench.measure import Figure, Results, Spread


def figure(name: str, value: float) -> Figure:
    return Figure("g", name, Spread(value, value, value, "min-max", 3), "u")


def test_the_model_needs_both_cpu_figures_and_sizes_the_fleet() -> None:
    results = Results()
    results.add(figure(WORKER_CPU_FIGURE, 2.5))
    assert model(results) is None  # no Redis figure in this run
    results.add(figure(f"{REDIS_CPU_PREFIX}, 10 keys, 1 pod", 200.0))
    results.add(figure(IDLE_FIGURE, 11.0))
    capacity = model(results)
    assert capacity is not None
    assert (capacity.per_worker_core, capacity.per_redis_core) == (400.0, 5000.0)
    lines = capacity.lines()
    # 20,000/s at 70 % of 400/s a core: 71.4 cores; of 5,000/s a Redis: 5.7 cores
    assert "71 worker cores (72 one-core pods) and 5.7 Redis cores, so 6 Redis" in lines[2]
    assert "8 pods and 0.6 Redis cores" in lines[3]
    assert lines[4].startswith("- idle cost: 11.0 Redis commands/s a pod, 792/s")


def test_the_idle_cost_of_a_pod_among_others_is_preferred() -> None:
    results = Results()
    results.add(figure(WORKER_CPU_FIGURE, 2.5))
    results.add(figure(f"{REDIS_CPU_PREFIX}, 10 keys, 1 pod", 200.0))
    results.add(figure(IDLE_FIGURE, 11.0))
    results.add(figure(f"{FLEET_IDLE_PREFIX}6 worker pods: Redis commands per second a pod", 9.0))
    capacity = model(results)
    assert capacity is not None
    assert capacity.idle_cmds_s == 9.0
