"""Issue 14: the contract refuses a cancel only when it cannot identify the order safely.

One test per row of the README's table of JSON type differences, the notes the worker counts,
and property tests: noise in the side fields never refuses a cancel with a valid identity, and
a message without one is refused naming the rule."""

from __future__ import annotations

import logging
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from cancelq.contract import (
    NUMBER_REFUSED,
    RULES,
    Note,
    parse_kill,
    read_cancel,
    read_kill,
)
from cancelq.errors import ContractError
from cancelq.worker.field_notes import MAX_NAMES, OVERFLOW, FieldNotes
from cancelq.worker.metrics import Metrics

NOW = 1_764_000_000_000
IDENTITY: dict[str, Any] = {
    "account": "main",
    "category": "linear",
    "symbol": "BTCUSDT",
    "orderLinkId": "a-1",
}


def read(**side: Any) -> tuple[Any, list[Note]]:
    return read_cancel({**IDENTITY, **side}, NOW)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (NOW, NOW),  # an integer
        (NOW + 0.75, NOW),  # time.time() * 1000: fractions allowed, floored to whole ms
        (float(NOW), NOW),  # JavaScript's Date.now() as a float
        (str(NOW), NOW),  # protobuf's JSON mapping writes int64 as text
        (f"{NOW}.5", NOW),
        (NOW - 30 * 24 * 3600 * 1000, NOW - 30 * 24 * 3600 * 1000),  # an old honest time
        (1_000_000_000_000, 1_000_000_000_000),  # the floor, 2001-09-09
        (NOW + 60_000, NOW + 60_000),  # a producer clock a minute ahead
    ],
)
def test_enqueued_at_is_any_json_number_of_epoch_ms(value: object, expected: int) -> None:
    request, notes = read(enqueuedAt=value)
    assert (request.enqueuedAt, notes) == (expected, [])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (NOW // 1000, "implausible"),  # seconds
        (NOW * 1000, "implausible"),  # microseconds
        (NOW + 3_600_000, "implausible"),  # an hour ahead
        (999_999_999_999, "implausible"),  # below 2001
        (0, "implausible"),
        (-1, "implausible"),
        (True, "invalid"),  # a boolean is not a number here
        (float("nan"), "invalid"),
        (float("inf"), "invalid"),
        (10**400, "invalid"),  # beyond any float
        ("yesterday", "invalid"),
        ("1e12", "invalid"),  # exponent text is not a plain decimal
        ([NOW], "invalid"),
        ({"ms": NOW}, "invalid"),
    ],
)
def test_an_unusable_enqueued_at_is_dropped_and_noted(value: object, reason: str) -> None:
    request, notes = read(enqueuedAt=value)
    assert request.enqueuedAt is None
    assert request.exchange_body()["orderLinkId"] == "a-1"
    assert notes == [Note("enqueuedAt", reason)]  # type: ignore[arg-type]


def test_null_is_absent_for_every_optional_field() -> None:
    nulls = {"orderId": None, "orderFilter": None, "requestId": None, "enqueuedAt": None}
    request, notes = read(**nulls)
    assert (request.orderId, request.requestId, request.enqueuedAt, notes) == (None, None, None, [])


def test_request_id_an_integer_is_its_text_and_an_unusable_one_is_dropped() -> None:
    assert read(requestId=42)[0].requestId == "42"
    for bad in ("a/b", "x" * 65, "", True, 1.5, ["r"]):
        request, notes = read(requestId=bad)
        assert request.requestId is None
        assert notes == [Note("requestId", "invalid")]


def test_unknown_fields_are_ignored_and_noted_by_name() -> None:
    request, notes = read(strategy="mm-3", schemaVersion=2, **{"x.y": 1})
    assert request.exchange_body() == {
        "category": "linear",
        "symbol": "BTCUSDT",
        "orderLinkId": "a-1",
    }
    assert sorted(n.field for n in notes) == ["schemaVersion", "strategy", "x.y"]
    assert {n.reason for n in notes} == {"unknown"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"orderLinkId": 1234}, "orderLinkId"),  # a number loses a link id's leading zeros
        ({"orderLinkId": None, "orderId": 1_234_567_890_123_456_789}, "orderId"),
        ({"orderLinkId": None, "orderId": 12.0}, "orderId"),
    ],
)
def test_order_ids_as_json_numbers_are_refused_with_the_reason(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ContractError) as info:
        read_cancel({**IDENTITY, **change}, NOW)
    assert f"{field}: {RULES[field]}{NUMBER_REFUSED}" in str(info.value)


@pytest.mark.parametrize(
    "change",
    [
        {"account": "main "},
        {"category": "Linear"},
        {"symbol": "btcusdt"},
        {"symbol": 1},
        {"orderFilter": "stopOrder"},
        {"orderFilter": True},
    ],
)
def test_identifying_fields_stay_strict(change: dict[str, Any]) -> None:
    field = next(iter(change))
    with pytest.raises(ContractError) as info:
        read_cancel({**IDENTITY, **change}, NOW)
    assert f"{field}: {RULES[field]}" in str(info.value)


def test_a_kill_reads_side_fields_leniently_and_its_scope_strictly() -> None:
    kill, notes = read_kill(
        {"account": "main", "category": "linear", "enqueuedAt": NOW + 0.5, "note": "x"}, NOW
    )
    assert (kill.enqueuedAt, kill.scope) == (NOW, "all")
    assert notes == [Note("note", "unknown")]
    with pytest.raises(ContractError, match="settleCoin"):
        parse_kill({"account": "main", "category": "linear", "settleCoin": 5}, NOW)
    with pytest.raises(ContractError, match="needs a category"):
        parse_kill({"account": "main", "symbol": "BTCUSDT"}, NOW)


# -- the worker's side: bounded metric, one log line per field --------------------------------


def test_field_notes_bound_the_label_set_and_log_each_name_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics(CollectorRegistry())
    notes = FieldNotes(metrics)
    with caplog.at_level(logging.WARNING, logger="cancelq.worker.field_notes"):
        for i in range(3):
            notes.observe([Note("strategy", "unknown")], f"r{i}")
        notes.observe([Note(f"f{i}", "unknown") for i in range(MAX_NAMES + 10)], "r9")
        notes.observe([Note("bad name!", "unknown")], "r10")
    value = metrics.ignored_fields.labels("strategy", "unknown")._value.get()
    assert value == 3
    labels = {
        sample.labels["field"]
        for family in metrics.ignored_fields.collect()
        for sample in family.samples
    }
    assert len(labels - {"enqueuedAt", "requestId", OVERFLOW}) <= MAX_NAMES
    assert OVERFLOW in labels
    strategy_lines = [r for r in caplog.records if "'strategy'" in r.getMessage()]
    assert len(strategy_lines) == 1


# -- property tests ----------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.just(str(NOW))
    | st.just(NOW + 0.25)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=5,
)
names = st.text(string.ascii_letters + string.digits + "_.-", min_size=1, max_size=12).filter(
    lambda name: name not in RULES
)
link_ids = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=36)
order_ids = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=64)
valid_identity = st.fixed_dictionaries(
    {
        "account": st.from_regex(r"\A[A-Za-z0-9_.-]{1,64}\Z"),
        "category": st.sampled_from(["spot", "linear", "inverse", "option"]),
        "symbol": st.from_regex(r"\A[A-Z0-9]{2,32}\Z"),
    }
).flatmap(
    lambda base: st.one_of(
        st.builds(lambda link: {**base, "orderLinkId": link}, link_ids),
        st.builds(lambda oid: {**base, "orderId": oid}, order_ids),
    )
)
side_noise = st.fixed_dictionaries(
    {},
    optional={"enqueuedAt": json_values, "requestId": json_values},
).flatmap(lambda side: st.dictionaries(names, json_values, max_size=4).map(lambda x: {**x, **side}))


@settings(max_examples=300, deadline=None)
@given(identity=valid_identity, noise=side_noise)
def test_every_message_with_a_valid_identity_is_sent(
    identity: dict[str, Any], noise: dict[str, Any]
) -> None:
    request, notes = read_cancel({**noise, **identity}, NOW)
    body = request.exchange_body()
    for field in ("category", "symbol", "orderId", "orderLinkId"):
        assert body.get(field) == identity.get(field)
    assert {n.field for n in notes} <= {*noise, "enqueuedAt", "requestId"}


CATEGORIES = ("spot", "linear", "inverse", "option")
identity_breakers = st.one_of(
    st.fixed_dictionaries(
        {"account": json_values.filter(lambda v: not (isinstance(v, str) and v and len(v) <= 64))}
    ),
    st.fixed_dictionaries({"category": st.text(max_size=8).filter(lambda c: c not in CATEGORIES)}),
    st.fixed_dictionaries({"symbol": st.from_regex(r"\A[a-z]{2,8}\Z")}),
    st.fixed_dictionaries({"orderLinkId": st.integers() | st.text(min_size=37, max_size=40)}),
    st.just({"orderLinkId": None, "orderId": None}),
)


@settings(max_examples=300, deadline=None)
@given(identity=valid_identity, breaker=identity_breakers, noise=side_noise)
def test_every_message_without_a_valid_identity_is_refused_naming_the_rule(
    identity: dict[str, Any], breaker: dict[str, Any], noise: dict[str, Any]
) -> None:
    fields = {**noise, **identity, **breaker}
    if breaker.get("orderLinkId") is not None:
        fields.pop("orderId", None)
    with pytest.raises(ContractError) as info:
        read_cancel(fields, NOW)
    named = {problem.split(":", 1)[0] for problem in info.value.problems}
    assert named <= {*RULES, "orderId/orderLinkId"}
    assert named & {*breaker, "orderId/orderLinkId"}
    assert all(
        RULES.get(field, "required") in str(info.value) for field in named - {"orderId/orderLinkId"}
    )
