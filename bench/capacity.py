"""The capacity model: what a fleet needs, from the figures of the same run.

Inputs (when the run measured them): worker CPU ms per cancel (``systems``, the throughput
run: every process of the worker, Celery's included), Redis CPU µs per cancel and idle Redis
commands per second of a pod (``redis_cost``). Worker cores scale out (pods); one Redis runs
commands on one core, so its ceiling is one core's worth. Both are planned at
:data:`PLANNED_LOAD` of a core, headroom for bursts, retries and the noisy neighbour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.measure import Figure, Results

PLANNED_LOAD = 0.7
FLEET_KEYS = 1000
KEY_RATE_PER_S = 20.0
WORKER_CPU_FIGURE = "cancelq CPU ms/cancel (vs pybit)"
REDIS_CPU_PREFIX = "Redis CPU per cancel"
IDLE_FIGURE = "idle worker pod: Redis commands per second"
#: Preferred: a pod's idle cost measured among others (what it reads of them included).
FLEET_IDLE_PREFIX = "idle fleet of "


@dataclass(frozen=True)
class Capacity:
    worker_cpu_ms: float
    redis_cpu_us: float
    idle_cmds_s: float | None

    @property
    def per_worker_core(self) -> float:
        return 1000 / self.worker_cpu_ms

    @property
    def per_redis_core(self) -> float:
        return 1e6 / self.redis_cpu_us

    def lines(self) -> list[str]:
        rate = FLEET_KEYS * KEY_RATE_PER_S
        worker_cores = rate / (self.per_worker_core * PLANNED_LOAD)
        redis_cores = rate / (self.per_redis_core * PLANNED_LOAD)
        pods = math.ceil(worker_cores)
        out = [
            f"- one worker core: {self.per_worker_core:,.0f} cancels/s "
            f"({self.worker_cpu_ms:.2f} CPU ms a cancel, worker and Celery together); "
            f"planned at {PLANNED_LOAD:.0%}: {self.per_worker_core * PLANNED_LOAD:,.0f}/s",
            f"- one Redis (one core for commands): {self.per_redis_core:,.0f} cancels/s "
            f"({self.redis_cpu_us:.0f} µs of Redis CPU a cancel); planned at "
            f"{PLANNED_LOAD:.0%}: {self.per_redis_core * PLANNED_LOAD:,.0f}/s",
            f"- {FLEET_KEYS:,} keys at {KEY_RATE_PER_S:g}/s, every key at its limit at once "
            f"(the worst case: {rate:,.0f} cancels/s): {worker_cores:,.0f} worker cores "
            f"({pods} one-core pods) and {redis_cores:.1f} Redis cores, so "
            f"{math.ceil(redis_cores)} Redis instances (one Redis is not enough: "
            'docs/DESIGN.md, "Past one Redis", shards by account)',
            f"- the same fleet at 10 % of its budget on average ({rate / 10:,.0f}/s): "
            f"{math.ceil(worker_cores / 10)} pods and {redis_cores / 10:.1f} Redis cores",
        ]
        if self.idle_cmds_s is not None:
            out.append(
                f"- idle cost: {self.idle_cmds_s:.1f} Redis commands/s a pod, "
                f"{self.idle_cmds_s * pods:,.0f}/s for the {pods} pods doing nothing"
            )
        return out


def _median(results: Results, match: str, *, prefix: bool = False) -> float | None:
    found: list[Figure] = [
        f for f in results.figures if (f.name.startswith(match) if prefix else f.name == match)
    ]
    return found[0].value.median if found else None


def model(results: Results) -> Capacity | None:
    """The model when this run measured both CPU figures, else None."""
    worker = _median(results, WORKER_CPU_FIGURE)
    redis_us = _median(results, REDIS_CPU_PREFIX, prefix=True)
    if not worker or not redis_us:
        return None
    idle = _median(results, FLEET_IDLE_PREFIX, prefix=True) or _median(results, IDLE_FIGURE)
    return Capacity(worker, redis_us, idle)
