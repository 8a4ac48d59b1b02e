"""The Python side of a lane's budget: ``floor(rate x (1 - margin))`` units per ``1000 + pad``
ms, batches capped per category; and what admit.lua's reply means (no Redis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cancelq.worker.ratelimit.lanes import BATCH_CAP, Admission, Budget, lane_name, parse_admission


def budget(rate: float, category: str = "spot", **options: object) -> Budget:
    values: dict[str, object] = {"margin": 0.0, "pad_ms": 10, "batching": True, "per_item": True}
    values.update(options)
    return Budget.for_account(rate, category, **values)


@pytest.mark.parametrize(
    ("rate", "margin", "limit"),
    [(20, 0.0, 20), (20, 0.1, 18), (10, 0.05, 9), (10.9, 0.0, 10), (1, 0.5, 1), (0.2, 0.0, 1)],
)
def test_the_limit_is_the_rate_less_the_margin_rounded_down_never_zero(
    rate: float, margin: float, limit: int
) -> None:
    assert budget(rate, margin=margin).limit == limit


def test_the_window_is_a_second_plus_the_pad() -> None:
    assert budget(20, pad_ms=0).window_ms == 1000
    assert budget(20, pad_ms=25).window_ms == 1025


@pytest.mark.parametrize("category", sorted(BATCH_CAP))
def test_batches_follow_bybits_caps_unless_batching_is_off(category: str) -> None:
    assert budget(20, category).batch == (10 if category == "spot" else 20)
    assert budget(20, category, batching=False).batch == 1


def test_per_item_says_how_a_batch_is_charged() -> None:
    assert budget(20).per_item is True
    assert budget(20, per_item=False).per_item is False


@given(
    rate=st.floats(min_value=0.01, max_value=10_000, allow_nan=False),
    margin=st.floats(min_value=0.0, max_value=0.99),
)
def test_the_budget_never_exceeds_the_rate_it_is_given(rate: float, margin: float) -> None:
    limit = budget(rate, margin=margin).limit
    assert limit >= 1
    assert limit == 1 or limit <= rate * (1 - margin)
    assert limit == max(math.floor(rate * (1 - margin)), 1)


def test_admit_lua_replies_mean_admitted_or_parked() -> None:
    assert parse_admission([1, 3, b"u-1:1"]) == Admission(True, 3, "u-1:1")
    assert parse_admission([0, 250]) == Admission(False, 250, None)


def test_a_lane_is_named_by_account_and_category() -> None:
    assert lane_name("main", "linear") == "main:linear"
