from __future__ import annotations

import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cancelq.contract import RULES, CancelRequest, parse_cancel
from cancelq.errors import ContractError

VALID: dict[str, Any] = {"account": "main", "category": "spot", "symbol": "BTCUSDT", "orderId": "1"}
NOW = 1_700_000_000_000


def problems(fields: dict[str, Any]) -> str:
    with pytest.raises(ContractError) as info:
        parse_cancel(fields)
    return str(info.value)


def test_a_minimal_cancel_is_valid() -> None:
    request = parse_cancel(VALID)
    assert request.exchange_body() == {"category": "spot", "symbol": "BTCUSDT", "orderId": "1"}
    assert request.identity == "spot:id:1"


def test_order_link_id_is_the_identity_when_given_and_order_id_wins_on_the_wire() -> None:
    request = parse_cancel({**VALID, "orderLinkId": "abc-1"})
    assert request.identity == "spot:link:abc-1"
    assert request.exchange_body()["orderId"] == "1"
    assert request.exchange_body()["orderLinkId"] == "abc-1"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"account": "bad alias"}, "account"),
        ({"category": "futures"}, "category"),
        ({"symbol": "btcusdt"}, "symbol"),
        ({"orderId": None, "orderLinkId": "x" * 37}, "orderLinkId"),
        ({"orderLinkId": "has space"}, "orderLinkId"),
        ({"orderFilter": "Stop"}, "orderFilter"),
        ({"category": "linear", "orderFilter": "StopOrder"}, "orderFilter"),
        ({"orderId": 123}, "orderId"),
        ({"orderId": None, "orderLinkId": 7}, "orderLinkId"),
        ({"symbol": None}, "symbol"),
        ({"account": 42}, "account"),
        ({"category": True}, "category"),
    ],
)
def test_each_broken_rule_names_its_field_and_rule(change: dict[str, Any], field: str) -> None:
    text = problems({**VALID, **change})
    assert f"{field}: " in text
    assert RULES[field] in text


def test_missing_ids_unknown_fields_and_missing_fields_are_all_reported() -> None:
    assert "one of the two is required" in problems(
        {k: v for k, v in VALID.items() if k != "orderId"}
    )
    text = problems({"orderId": "1"})
    assert "account: missing" in text
    assert "symbol: missing" in text


def test_a_float_millisecond_timestamp_from_another_language_is_accepted() -> None:
    assert parse_cancel({**VALID, "enqueuedAt": 1.7e12}, NOW).enqueuedAt == 1_700_000_000_000


def test_non_objects_are_refused() -> None:
    assert "JSON object" in problems([1, 2])  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = [*RULES, "extra"]


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=9))
def test_any_json_object_is_either_a_valid_cancel_or_a_contract_error(
    fields: dict[str, Any],
) -> None:
    result = try_parse(fields)
    if isinstance(result, ContractError):
        assert all(not p.startswith(("enqueuedAt", "requestId", "extra")) for p in result.problems)
        assert result.problems
        assert all(":" in problem for problem in result.problems)
    else:
        assert result.orderId is not None or result.orderLinkId is not None


def try_parse(fields: dict[str, Any]) -> CancelRequest | ContractError:
    try:
        return parse_cancel(fields)
    except ContractError as exc:
        return exc


ids = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=36)


@settings(max_examples=200, deadline=None)
@given(link=ids, category=st.sampled_from(["spot", "linear", "inverse", "option"]))
def test_every_well_formed_link_id_is_accepted(link: str, category: str) -> None:
    request = parse_cancel({**VALID, "orderId": None, "orderLinkId": link, "category": category})
    assert request.identity == f"{category}:link:{link}"
