"""What every scenario gets: the stack, the run's sizes, the results, the keys, progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.measure import Results
from bench.stack import Stack, make_keys
from cancelq.harness.accounts import AccountSpec

#: Celery pool used wherever systems are compared (issue 7): the reference numbers' pool.
COMPARE_POOL = ("--pool", "prefork", "--concurrency", "2")
COMPARE_PROCESSES = 2
#: cancelq's default pool; used by the rate-limit scenarios for cancelq and its baselines.
THREADS_POOL = ("--pool", "threads", "--concurrency", "8")
FREE_RATE = 100_000.0  # an account limit that never binds


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does; ``quick`` is scaled down (and says so in the report)."""

    name: str
    repeats: int
    never_over_n: int
    pads: tuple[int, ...]
    hol_hot: int
    hol_cold_s: float
    batch_n: int
    many_total: int
    many_keys: tuple[int, ...]
    throughput_n: int
    latency_s: float
    memory_counts: tuple[int, int]
    pool_throughput_n: int
    pool_latency_s: float
    warmup: int = 200  # cancels through a fresh set before its throughput is measured
    takeover_kills: int = 20  # SIGKILLed pods with the default pod TTL (issue 16)
    takeover_baseline_kills: int = 3  # the same behind a 60 s heartbeat: a minute each


QUICK = Sizes(
    "quick",
    1,
    120,  # 6 windows: with fewer the steady-rate estimate reads low and flips the 95 % target
    (10,),
    500,  # 25 s of backlog at 20/s: outlasts the 3 s cold stream
    3.0,
    60,
    400,
    (10, 1000),
    400,
    3.0,  # 300 samples at 100/s
    (400, 1200),
    150,
    1.5,
    warmup=100,
    takeover_kills=5,
    takeover_baseline_kills=1,
)
FULL = Sizes(
    "full",
    3,
    2000,
    (0, 10, 30),
    5000,
    30.0,
    1000,
    6000,
    (10, 100, 1000),
    5000,
    20.0,
    (10_000, 200_000),
    2000,
    10.0,
)


@dataclass(frozen=True)
class Keys:
    limited: dict[str, AccountSpec]  # 20/s keys of the rate-limit scenarios
    free: AccountSpec  # never-binding key of the system comparisons
    many: list[AccountSpec]  # 1,000 never-binding keys

    def all(self) -> list[AccountSpec]:
        return [*self.limited.values(), self.free, *self.many]

    def few(self) -> list[AccountSpec]:
        """Every key but the 1,000 of the many-keys scenario, which passes them itself."""
        return [*self.limited.values(), self.free]


def make_bench_keys(many: int = 1000) -> Keys:
    names = ("never", "celeryrl", "hot", "cold", "sleephot", "sleepcold", "items", "requests")
    limited = {
        name: AccountSpec(
            name,
            f"LIM{i:04d}{name.upper()}",
            7000 + i,
            api_secret=f"lim-secret-{name}",
            rate_limit_per_s=20.0,
            batch_counts_items=name != "requests",
        )
        for i, name in enumerate(names)
    }
    free = make_keys("free", 1, 8000, rate_limit_per_s=FREE_RATE)[0]
    return Keys(limited, free, make_keys("m", many, 10000, rate_limit_per_s=FREE_RATE))


@dataclass
class Context:
    stack: Stack
    sizes: Sizes
    results: Results
    keys: Keys
    say: Callable[[str], None]
