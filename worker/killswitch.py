"""The kill switch: cancel every open order of an account now, ahead of every queued cancel.

Runs as task ``cancelq.kill`` from its own queue (workers consume it beside the cancel queue, so
a kill never waits behind thousands of cancels). For each category in scope it sends Bybit's
``POST /v5/order/cancel-all`` (spot once per ``orderFilter``; linear/inverse need a symbol,
baseCoin or settleCoin, so without one every settle coin in :data:`SETTLE_COINS`), repeating while
futures return a full page of 500, within the cancel-all budget. Then it marks the scope, so
cancels queued before the kill are resolved as ``covered_by_kill`` when taken, and resolves the
cancels parked in the account's lanes the same way: none of them spends rate budget.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import redis

from cancelq.besteffort import safely
from cancelq.bybit.client import CANCEL_ALL, ExchangeReply
from cancelq.contract import Category, KillRequest, parse_cancel, read_kill
from cancelq.errors import ContractError, ExchangeUnavailableError, StoreError
from cancelq.outcomes import Outcome, Status
from cancelq.symbols import in_scope
from cancelq.worker.decisions import Final as FinalDecision
from cancelq.worker.field_notes import FieldNotes
from cancelq.worker.ratelimit.lanes import lane_name
from cancelq.worker.records import Recorder
from cancelq.worker.retcodes import Action, classify
from cancelq.worker.runtime import AccountRuntime, Runtime
from cancelq.worker.tickets import Ticket, now_ms, parked_fields

log = logging.getLogger(__name__)

CATEGORIES: Final[tuple[Category, ...]] = ("spot", "linear", "inverse", "option")
#: Bybit's default cancel-all limits per UID (requests per second).
CANCEL_ALL_LIMITS: Final = {"spot": 20, "linear": 10, "inverse": 10, "option": 1}
FUTURES_PAGE: Final = 500
SPOT_FILTERS: Final = ("Order", "tpslOrder", "StopOrder")
#: Without a symbol or coin, linear/inverse are cancelled per settle coin (inverse: the coin).
SETTLE_COINS: Final = {"linear": ("USDT", "USDC"), "inverse": ("BTC", "ETH", "XRP", "EOS")}
MAX_CALLS: Final = 60
#: The kill may wait this long in total for its cancel-all budget before rescheduling itself:
#: a kill is rare and urgent, and waiting here keeps its progress (the pages already done).
MAX_BUDGET_WAIT_S: Final = 2.0


@dataclass
class KillProgress:
    calls: int = 0
    cancelled: int = 0
    last: ExchangeReply | None = None
    failure: str | None = None
    waited_s: float = 0.0
    covered: int = 0
    categories: list[str] = field(default_factory=list)


def cancel_all_bodies(kill: KillRequest) -> list[dict[str, str]]:
    """The cancel-all request bodies a kill needs, one per (category, filter or coin)."""
    bodies: list[dict[str, str]] = []
    for category in [kill.category] if kill.category else list(CATEGORIES):
        base: dict[str, str] = {"category": category}
        for name in ("symbol", "baseCoin", "settleCoin"):
            if value := getattr(kill, name):
                base[name] = value
        if category == "spot":
            bodies.extend({**base, "orderFilter": f} for f in SPOT_FILTERS)
        elif category in SETTLE_COINS and len(base) == 1:
            bodies.extend({**base, "settleCoin": coin} for coin in SETTLE_COINS[category])
        else:
            bodies.append(base)
    return bodies


class KillSwitch:
    def __init__(self, runtime: Runtime, recorder: Recorder, notes: FieldNotes) -> None:
        self.rt = runtime
        self.recorder = recorder
        self.notes = notes

    def run(self, fields: Mapping[str, Any], task_id: str) -> Outcome:
        try:
            kill, notes = read_kill(fields, now_ms())
        except ContractError as exc:
            return self.recorder.reject(fields, task_id, str(exc))
        request_id = kill.requestId or task_id
        self.notes.observe(notes, request_id)
        account = self.rt.accounts.get(kill.account)
        if account is None:
            return self.recorder.reject(fields, request_id, "account: not in the accounts file")
        started = now_ms()
        progress = KillProgress()
        for body in cancel_all_bodies(kill):
            self._cancel_all(account, body, progress)
            if progress.failure:
                break
        if progress.failure is None:
            self._mark(kill, started)
            self._cover_parked(kill, account, request_id, progress)
        return self._record(kill, request_id, started, progress)

    # -- exchange ----------------------------------------------------------------------------

    def _cancel_all(
        self, account: AccountRuntime, body: Mapping[str, str], progress: KillProgress
    ) -> None:
        """One scope: repeat while a futures page comes back full (or the exchange says retry)."""
        while progress.calls < MAX_CALLS:
            if not self._budget(account.account.alias, body["category"], progress):
                progress.failure = "cancel-all budget not available in time"
                return
            progress.calls += 1
            reply = self._post(account, body)
            progress.last = reply
            if reply is None:
                continue
            action = classify(reply, account.table)
            if action is Action.DONE:
                page = reply.result.get("list")
                count = len(page) if isinstance(page, list) else 0
                progress.cancelled += count
                if count < FUTURES_PAGE:
                    return
            elif action is Action.RETRY_CLOCK:
                self.rt.clock.invalidate()
            elif action not in (Action.RETRY_RATE_LIMIT, Action.RETRY_TRANSIENT):
                progress.failure = f"cancel-all answered retCode {reply.code_label}"
                return
        progress.failure = progress.failure or f"cancel-all still busy after {MAX_CALLS} calls"

    def _post(self, account: AccountRuntime, body: Mapping[str, str]) -> ExchangeReply | None:
        if self.rt.clock.is_stale():
            self.rt.clock.sync(self.rt.client.server_time)
        try:
            reply = self.rt.client.post(
                CANCEL_ALL, body, account.credentials, self.rt.clock.now_ms()
            )
        except ExchangeUnavailableError:
            return None
        counter = self.rt.metrics.exchange_responses
        safely(
            counter.labels(
                account.account.alias, body["category"], "cancel_all", reply.code_label
            ).inc
        )
        return reply

    def _budget(self, alias: str, category: str, progress: KillProgress) -> bool:
        name = f"{lane_name(alias, category)}:cancel-all"
        while progress.waited_s < MAX_BUDGET_WAIT_S:
            wait_ms = self.rt.lanes.acquire(name, CANCEL_ALL_LIMITS[category], 1000)
            if wait_ms == 0:
                return True
            pause = min(wait_ms / 1000, MAX_BUDGET_WAIT_S - progress.waited_s)
            time.sleep(pause)  # bounded; see MAX_BUDGET_WAIT_S
            progress.waited_s += pause
        return False

    # -- queued cancels ----------------------------------------------------------------------

    def _mark(self, kill: KillRequest, started: int) -> None:
        kill_at = kill.enqueuedAt or started
        ttl_s = self.rt.settings.dedup_ttl_s
        try:
            with self.rt.redis.pipeline(transaction=False) as pipe:
                for category in [kill.category] if kill.category else list(CATEGORIES):
                    marker = self.rt.keys.kill_marker(kill.account, category)
                    pipe.hset(marker, kill.scope, kill_at)
                    pipe.expire(marker, ttl_s)
                pipe.execute()
        except redis.RedisError as exc:
            raise StoreError(f"marking a kill failed: {exc}") from exc

    def _cover_parked(
        self,
        kill: KillRequest,
        account: AccountRuntime,
        request_id: str,
        progress: KillProgress,
    ) -> None:
        kill_at = kill.enqueuedAt or now_ms()
        for category in [kill.category] if kill.category else list(CATEGORIES):
            parked = self.rt.lanes.take_parked(kill.account, category)
            chosen = {
                rid: item
                for rid, item in parked
                if covers(kill.scope, kill_at, category, json.loads(item))
            }
            for rid in self.rt.lanes.unpark(kill.account, category, list(chosen)):
                if self._cover(account, chosen[rid], request_id):
                    progress.covered += 1

    def _cover(self, account: AccountRuntime, item_json: str, kill_id: str) -> bool:
        try:
            request_id, parked_at, fields = parked_fields(json.loads(item_json))
            request = parse_cancel(fields)
        except (KeyError, TypeError, ValueError, ContractError):
            return False
        ticket = Ticket(request, request_id, account, 0, parked_at)
        self.recorder.finish(ticket, covered_by(kill_id), None)
        return True

    # -- record ------------------------------------------------------------------------------

    def _record(
        self, kill: KillRequest, request_id: str, started: int, progress: KillProgress
    ) -> Outcome:
        last = progress.last
        outcome = Outcome(
            requestId=request_id,
            status=Status.FAILED if progress.failure else Status.KILLED,
            account=kill.account,
            category=kill.category,
            symbol=kill.symbol,
            retCode=last.ret_code if last else None,
            retMsg=last.ret_msg if last else None,
            reason=progress.failure,
            attempts=progress.calls,
            ordersCancelled=progress.cancelled,
            requestsCovered=progress.covered,
            enqueuedAt=kill.enqueuedAt,
            startedAt=started,
            finishedAt=now_ms(),
        )
        self.recorder.store_plain(outcome)
        safely(self.rt.metrics.kills.labels(kill.account, kill.category or "all").inc)
        log.warning(
            "kill switch %s: %d orders cancelled, %d queued cancels covered, %d calls%s",
            outcome.status.value,
            progress.cancelled,
            progress.covered,
            progress.calls,
            f" ({progress.failure})" if progress.failure else "",
            extra={
                "requestId": request_id,
                "account": kill.account,
                "status": outcome.status.value,
            },
        )
        return outcome


def covered_by(kill_id: str) -> FinalDecision:
    return FinalDecision(Status.COVERED_BY_KILL, keep=True, reason=f"covered by kill {kill_id}")


def covers(scope: str, kill_at: int, category: str, item: Mapping[str, Any]) -> bool:
    """Does a kill (scope, time) cover a parked item (``{"fields": {...}}``)?"""
    fields = item.get("fields", {})
    enqueued = fields.get("enqueuedAt")
    symbol = str(fields.get("symbol", ""))
    return in_scope(scope, category, symbol) and (enqueued is None or enqueued <= kill_at)


def kill_covering(
    kills: Mapping[str, int], category: str, symbol: str, enqueued_at: int | None
) -> str | None:
    """The scope of a kill that covers a cancel taken now, if any.

    A cancel without a (plausible) ``enqueuedAt`` is never covered: nothing says it was
    enqueued before the kill, and its order may be one placed after it. It is sent; when the
    kill already cancelled the order, the exchange answers "already gone"."""
    if enqueued_at is None:
        return None
    for scope, kill_at in kills.items():
        if in_scope(scope, category, symbol) and enqueued_at <= kill_at:
            return scope
    return None
