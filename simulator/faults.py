"""Fault injection: latency, error answers, resets, hangs and clock skew.

Settable at start (CLI) and live (admin API). One seeded RNG makes a run reproducible. For each
request in scope, one draw picks at most one of the error faults by their probabilities, in the
order ``reset, hang, http_5xx, http_429, ret_10016, ret_10006``; latency is added on top.

Latency distributions (all in ms, never negative):

* ``fixed``: ``latency_ms``
* ``uniform``: between ``latency_ms`` and ``latency_max_ms``
* ``normal``: mean ``latency_ms``, standard deviation ``latency_sigma_ms``
* ``lognormal``: median ``latency_ms``, shape ``latency_sigma`` (sigma of the log)
* ``exponential``: mean ``latency_ms``
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

DISTRIBUTIONS = ("fixed", "uniform", "normal", "lognormal", "exponential")


class FaultKind(enum.StrEnum):
    RESET = "reset"
    HANG = "hang"
    HTTP_5XX = "http_5xx"
    HTTP_429 = "http_429"
    RET_10016 = "ret_10016"
    RET_10006 = "ret_10006"


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """All knobs; the default injects nothing."""

    latency_ms: float = 0.0
    latency_dist: str = "fixed"
    latency_max_ms: float = 0.0
    latency_sigma_ms: float = 0.0
    latency_sigma: float = 0.5
    p_reset: float = 0.0
    p_hang: float = 0.0
    p_http_5xx: float = 0.0
    p_http_429: float = 0.0
    p_10016: float = 0.0
    p_10006: float = 0.0
    http_5xx_statuses: tuple[int, ...] = (500, 502, 503)
    clock_skew_ms: int = 0
    endpoints: tuple[str, ...] = ()  # e.g. ("order/cancel",); empty = every V5 endpoint
    seed: int | None = None

    def probabilities(self) -> tuple[tuple[FaultKind, float], ...]:
        return (
            (FaultKind.RESET, self.p_reset),
            (FaultKind.HANG, self.p_hang),
            (FaultKind.HTTP_5XX, self.p_http_5xx),
            (FaultKind.HTTP_429, self.p_http_429),
            (FaultKind.RET_10016, self.p_10016),
            (FaultKind.RET_10006, self.p_10006),
        )

    @property
    def active(self) -> bool:
        return self.latency_ms > 0 or any(p > 0 for _, p in self.probabilities())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["http_5xx_statuses"] = list(self.http_5xx_statuses)
        data["endpoints"] = list(self.endpoints)
        return data


_FIELD_NAMES = frozenset(f.name for f in fields(FaultSettings))


def _coerce(name: str, value: Any) -> Any:
    if name in ("http_5xx_statuses", "endpoints"):
        return tuple(int(v) if name == "http_5xx_statuses" else str(v) for v in value)
    if name == "clock_skew_ms":
        return int(value)
    if name == "latency_dist":
        if value not in DISTRIBUTIONS:
            raise ValueError(f"latency_dist must be one of {', '.join(DISTRIBUTIONS)}")
        return str(value)
    if name == "seed":
        return None if value is None else int(value)
    number = float(value)
    if name.startswith("p_") and not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1")
    if number < 0:
        raise ValueError(f"{name} must not be negative")
    return number


def updated(settings: FaultSettings, changes: dict[str, Any]) -> FaultSettings:
    """``settings`` with ``changes`` applied; unknown names raise ``ValueError``."""
    unknown = set(changes) - _FIELD_NAMES
    if unknown:
        raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
    return replace(settings, **{k: _coerce(k, v) for k, v in changes.items()})


@dataclass(frozen=True, slots=True)
class FaultDecision:
    delay_s: float
    kind: FaultKind | None
    http_status: int = 0


class FaultInjector:
    """Decides, per request, what goes wrong."""

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self.settings = settings or FaultSettings()
        self._rng = random.Random(self.settings.seed)

    def configure(self, settings: FaultSettings) -> None:
        if settings.seed is not None and settings.seed != self.settings.seed:
            self._rng = random.Random(settings.seed)
        self.settings = settings

    def clear(self) -> None:
        """No faults, no skew; the RNG keeps going."""
        self.settings = FaultSettings(seed=self.settings.seed)

    def decide(self, endpoint: str) -> FaultDecision | None:
        """What to do to a request for ``endpoint`` (``None``: nothing)."""
        s = self.settings
        if not s.active or (s.endpoints and endpoint not in s.endpoints):
            return None
        kind = self._pick_kind(s)
        status = 0
        if kind is FaultKind.HTTP_5XX:
            status = self._rng.choice(s.http_5xx_statuses or (500,))
        elif kind is FaultKind.HTTP_429:
            status = 429
        return FaultDecision(self._latency_s(s), kind, status)

    def _pick_kind(self, s: FaultSettings) -> FaultKind | None:
        draw = self._rng.random()
        edge = 0.0
        for kind, p in s.probabilities():
            edge += p
            if draw < edge:
                return kind
        return None

    def _latency_s(self, s: FaultSettings) -> float:
        base = s.latency_ms
        if base <= 0:
            return 0.0
        rng = self._rng
        dist = s.latency_dist
        if dist == "uniform":
            ms = rng.uniform(base, max(base, s.latency_max_ms))
        elif dist == "normal":
            ms = rng.gauss(base, s.latency_sigma_ms)
        elif dist == "lognormal":
            ms = rng.lognormvariate(math.log(base), s.latency_sigma)
        elif dist == "exponential":
            ms = rng.expovariate(1.0 / base)
        else:
            ms = base
        return max(0.0, ms) / 1000.0
