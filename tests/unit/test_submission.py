"""Sign and submit without a network: the cancel-batch body, and a batch reply split into one
reply per item (each ticket is classified by its own code)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cancelq.bybit.client import CANCEL, CANCEL_BATCH, Credentials, ExchangeReply
from cancelq.errors import ExchangeUnavailableError
from cancelq.worker.submission import Submitter, batch_body, split_batch_reply
from tests.unit.factories import ticket


def batch_reply(results: list[Any], infos: list[Any], **fields: Any) -> ExchangeReply:
    return ExchangeReply(
        http_status=fields.pop("http_status", 200),
        ret_code=fields.pop("ret_code", 0),
        ret_msg="OK",
        result={"list": results},
        ret_ext_info={"list": infos},
        limit=10,
        **fields,
    )


def test_each_item_gets_its_own_code_message_and_result() -> None:
    reply = batch_reply(
        [{"orderId": "1"}, {"orderId": "2"}],
        [{"code": 0, "msg": "OK"}, {"code": 110001, "msg": "order not exists"}],
    )
    first, second = split_batch_reply(reply, 2)
    assert (first.ret_code, first.ret_msg, first.result) == (0, "OK", {"orderId": "1"})
    assert (second.ret_code, second.ret_msg) == (110001, "order not exists")
    assert second.result == {"orderId": "2"}
    assert first.ret_ext_info == second.ret_ext_info == {}
    assert first.limit == second.limit == 10  # the request's headers apply to every item


def test_a_batch_refused_as_a_whole_applies_to_every_item() -> None:
    refused = batch_reply([], [], ret_code=10006)
    assert split_batch_reply(refused, 3) == [refused] * 3
    failed = batch_reply([], [], http_status=502, ret_code=None)
    assert split_batch_reply(failed, 2) == [failed] * 2


def test_missing_or_malformed_item_replies_are_unknown_not_accepted() -> None:
    reply = batch_reply([{"orderId": "1"}, "junk"], [{"code": 0}, {"code": "0"}])
    items = split_batch_reply(reply, 3)
    assert items[0].ret_code == 0
    assert items[1].ret_code is None  # a code that is not an int is no code
    assert items[1].result == {}
    assert (items[2].ret_code, items[2].ret_msg) == (None, "missing item reply")


def test_a_reply_whose_lists_are_absent_leaves_every_item_unknown() -> None:
    reply = ExchangeReply(http_status=200, ret_code=0, ret_msg="OK")
    assert [r.ret_code for r in split_batch_reply(reply, 2)] == [None, None]


def test_the_batch_body_names_the_category_once() -> None:
    tickets = [ticket(orderId="1"), ticket(orderId=None, orderLinkId="link-2")]
    assert batch_body(tickets) == {
        "category": "spot",
        "request": [
            {"symbol": "BTCUSDT", "orderId": "1"},
            {"symbol": "BTCUSDT", "orderLinkId": "link-2"},
        ],
    }


class FakeClient:
    """The one method the submitter calls; answers with ``reply`` or raises ``error``."""

    def __init__(self, reply: ExchangeReply | None = None, error: Exception | None = None):
        self.reply, self.error = reply, error
        self.sent: list[tuple[str, Mapping[str, Any], int]] = []

    def post(
        self, path: str, body: Mapping[str, Any], _creds: Credentials, timestamp_ms: int
    ) -> ExchangeReply:
        self.sent.append((path, body, timestamp_ms))
        if self.error is not None:
            raise self.error
        assert self.reply is not None
        return self.reply


class FixedClock:
    def now_ms(self) -> int:
        return 1_700_000_000_000


def test_one_ticket_goes_to_cancel_several_to_cancel_batch() -> None:
    ok = ExchangeReply(http_status=200, ret_code=0, ret_msg="OK")
    client = FakeClient(ok)
    path, sent = Submitter(client, FixedClock()).send([ticket()])
    assert path == CANCEL
    assert [reply for _, reply in sent] == [ok]
    assert client.sent[0][0] == CANCEL
    assert client.sent[0][2] == 1_700_000_000_000  # signed with the exchange's clock

    batch = batch_reply([{}, {}], [{"code": 0}, {"code": 110001}])
    path, sent = Submitter(FakeClient(batch), FixedClock()).send(
        [ticket(orderId="1"), ticket(orderId="2")]
    )
    assert path == CANCEL_BATCH
    assert [reply.ret_code for _, reply in sent if reply is not None] == [0, 110001]


def test_no_reply_at_all_is_none_for_every_ticket() -> None:
    client = FakeClient(error=ExchangeUnavailableError("timeout", "ReadTimeout"))
    tickets = [ticket(orderId="1"), ticket(orderId="2")]
    path, sent = Submitter(client, FixedClock()).send(tickets)
    assert path == CANCEL_BATCH
    assert sent == [(tickets[0], None), (tickets[1], None)]
