"""Figures and the statistics behind them: percentiles, medians with spread, Redis command
counts (``INFO commandstats`` deltas) and what one figure of the results table holds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

#: Commands the harness issues itself (producer LPUSH, outcome MGET, drain polls, INFO):
#: subtracted from the workers' Redis cost. The workers use none of them on the hot path.
HARNESS_COMMANDS = frozenset(
    {"lpush", "mget", "llen", "hlen", "zrevrange", "zrandmember", "info", "config|resetstat"}
)
#: What the harness sends while it only watches an idle pod: its INFO readings.
READING_COMMANDS = frozenset({"info"})


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class Spread:
    """A median with its spread: min-max over repeats, or IQR over samples."""

    median: float
    low: float
    high: float
    kind: str  # "min-max" or "IQR"
    n: int

    @classmethod
    def of_repeats(cls, values: Sequence[float]) -> Spread:
        vals = [v for v in values if not math.isnan(v)] or [math.nan]
        return cls(statistics.median(vals), min(vals), max(vals), "min-max", len(values))

    def text(self, fmt: str = "{:.1f}") -> str:
        if self.n <= 1 and self.kind == "min-max":
            return "n=1"
        return f"{fmt.format(self.low)}-{fmt.format(self.high)} ({self.kind}, n={self.n})"


@dataclass
class Figure:
    """One row of the results table: a figure, the baseline measured in the same run, the
    ratio, the target, and whether it is met (None: informative, no target)."""

    group: str
    name: str
    value: Spread
    unit: str
    baseline: Spread | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""
    fmt: str = "{:.1f}"

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or not self.baseline.median:
            return None
        return self.value.median / self.baseline.median


@dataclass
class Results:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)  # plot data
    sections: dict[str, list[str]] = field(default_factory=dict)  # title -> markdown lines

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure


def commandstats(client: redis.Redis) -> dict[str, int]:
    raw = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in raw.items()}


def command_usec(client: redis.Redis) -> dict[str, int]:
    """Microseconds Redis spent executing each command so far (``INFO commandstats`` usec: a
    script's time includes its inner calls, which are also counted under their own names)."""
    raw = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["usec"]) for name, v in raw.items()}


def command_delta(
    before: Mapping[str, int],
    after: Mapping[str, int],
    left_out: frozenset[str] = HARNESS_COMMANDS,
) -> dict[str, int]:
    """Calls per command between two ``commandstats`` readings, ``left_out`` left out (by
    default the harness's own: its polling and enqueue)."""
    return {
        k: after.get(k, 0) - before.get(k, 0)
        for k in after
        if after.get(k, 0) - before.get(k, 0) > 0 and k not in left_out
    }


@dataclass(frozen=True)
class Cost:
    """Per-cancel cost of a run: Redis commands (all, and client calls = EVAL/EVALSHA plus
    plain commands not run by a script), worker CPU ms."""

    redis_calls: float
    redis_scripts: float
    cpu_ms: float


def measure_cost(
    client: redis.Redis, cpu_s: Callable[[], float], run: Callable[[], int]
) -> tuple[Cost, int]:
    """Run ``run`` (returns the number of cancels it completed) between two snapshots."""
    before, cpu0 = commandstats(client), cpu_s()
    count = run()
    after, cpu1 = commandstats(client), cpu_s()
    delta = command_delta(before, after)
    scripts = sum(v for k, v in delta.items() if k in ("evalsha", "eval", "fcall"))
    n = max(count, 1)
    return Cost(sum(delta.values()) / n, scripts / n, (cpu1 - cpu0) * 1000 / n), count
