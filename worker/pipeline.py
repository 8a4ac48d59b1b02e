"""The cancel pipeline: validate → dedup → rate limit → sign & submit → classify → record.

Two entry points, one per Celery task:

* :meth:`CancelPipeline.handle` takes a request off the public queue: validates it, claims its
  identity, and asks its lane for budget. Admitted now: it is sent at once, by this task.
  Otherwise it is parked in Redis and this task is done (no worker slot waits on a budget).
* :meth:`CancelPipeline.submit` sends what a dispatcher took out of a lane: the budget is spent
  already, several cancels of one lane go as one batch.

A reply that calls for another try parks the ticket again with a not-before time (or sends it
at once when its lane allows). Nothing here sleeps; metrics and logs never fail a cancel.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis

from cancelq.besteffort import safely
from cancelq.bybit.client import ENDPOINT_LABELS, ExchangeReply
from cancelq.contract import CancelRequest, parse_cancel, read_cancel
from cancelq.errors import ContractError, StoreError
from cancelq.signals import AUTH_FAILED, RATE_LIMITED, SENT, SignalCounts
from cancelq.worker.claims import Claim, ClaimEntry, parse_claim
from cancelq.worker.decisions import Again, Final, RetryPolicy
from cancelq.worker.delivery import mark_record_deleted
from cancelq.worker.field_notes import FieldNotes
from cancelq.worker.intake import IntakeResult
from cancelq.worker.killswitch import KillSwitch, covered_by, kill_covering
from cancelq.worker.own_beat import OwnBeatWait, wait_for_takeover_s
from cancelq.worker.ratelimit.lanes import Admission, Budget, lane_name
from cancelq.worker.records import Recorder
from cancelq.worker.retcodes import Action, classify
from cancelq.worker.runtime import AccountRuntime, Runtime
from cancelq.worker.scripted_pipeline import run_pipeline
from cancelq.worker.submission import Submitter
from cancelq.worker.tickets import Ticket, now_ms, parked_fields

log = logging.getLogger(__name__)
RATE_WINDOW_MS = 1000


@dataclass(frozen=True)
class Spent:
    """The budget units a request spent: members of its lane's log."""

    lane: str  # account:category
    units: list[str]


def reply_came(sent: Sequence[tuple[Ticket, ExchangeReply | None]]) -> bool:
    """The request reached the exchange (a reply, of any kind); else nothing was counted
    there after the spend, or it is unknown when: the spend's stamp stands."""
    return any(reply is not None for _, reply in sent)


class CancelPipeline:
    def __init__(self, runtime: Runtime, rng: random.Random | None = None) -> None:
        self.rt = runtime
        self.retry_policy = RetryPolicy(runtime.settings, rng)
        self.recorder = Recorder(runtime)
        self.lanes = runtime.lanes
        self.submitter = Submitter(runtime.client, runtime.clock)
        self.field_notes = FieldNotes(runtime.metrics)
        self._limits_seen: dict[tuple[str, str], int] = {}
        settings = runtime.settings
        self._own_beat = OwnBeatWait(wait_for_takeover_s(settings.pod_ttl_s, settings.pod_beat_s))

    # -- entry points -------------------------------------------------------------------------

    def handle(self, fields: Mapping[str, Any], task_id: str) -> None:
        """A request from the public queue: claim and admission in one round trip."""
        try:
            request, notes = read_cancel(fields, now_ms())
        except ContractError as exc:
            self.recorder.reject(fields, task_id, str(exc))
            return
        request_id = request.requestId or task_id
        self.field_notes.observe(notes, request_id)
        account = self.rt.accounts.get(request.account)
        if account is None:
            self.recorder.reject(fields, request_id, "account: not in the accounts file")
            return
        taken_ms = now_ms()
        wait_ms = max(taken_ms - request.enqueuedAt, 0) if request.enqueuedAt is not None else 0
        coalesce = self._behind(wait_ms)
        if self.rt.ban.banned() or self.rt.stopping.is_set():  # the two-step path decides
            ticket = self._claim(request, request_id, account, attempt=False)
            if ticket is not None:
                self._observe_intake(ticket, wait_ms)
                self._advance(ticket, 0.0, coalesce=coalesce)
            return
        provisional = Ticket(request, request_id, account, 0, taken_ms)
        admit_call = self.lanes.admit_call(**self._admit_args(provisional, 0.0, coalesce))
        ending = self.rt.claims.ending(request_id)  # parked here, the delivery ends
        record_index = self.rt.claims.record_index if ending else ""

        def intake(_: Sequence[int], check: bool) -> list[IntakeResult]:
            claim_call = self.rt.claims.claim_call(
                ClaimEntry(
                    request.account,
                    request.identity,
                    request_id,
                    taken_ms,
                    attempt=False,
                    own_beat=check,
                )
            )
            return [self.rt.intake.run(claim_call, admit_call, record_index)]

        [result] = self._own_beat.settle(1, intake, lambda r: r.claim.verdict == "stale")
        if record_index and result.admission is not None and not result.admission.admitted:
            mark_record_deleted(ending)  # parked: the script deleted the delivery's record
        ticket = self._ticket(request, request_id, account, result.claim)
        if ticket is None:
            return
        self._observe_intake(ticket, wait_ms)
        if result.admission is None:  # a kill ran on this lane and does not cover it
            self._advance(ticket, 0.0, coalesce=coalesce)
        else:
            self._admitted(ticket, result.admission)

    def submit(
        self,
        items: Sequence[Mapping[str, Any]],
        task_id: str,
        *,
        lane: str = "",
        spent: str = "",
        units: int = 0,
        redelivered: bool = False,
    ) -> None:
        """Cancels a dispatcher took out of one lane, their budget already spent (``units``
        log members ``<spent>:1..units``): every item's claim in one round trip, then one
        request. A ``redelivered`` batch (its worker process died holding it) may already
        have been sent on the budget it carries: its cancels go through the limiter again."""
        unparked = [u for u in (self._unpark(item, task_id) for item in items) if u is not None]
        if not unparked:
            return
        tickets, halted = self._claim_dispatched(unparked)
        if tickets and halted:  # halted after dispatch took them: back to the lane, unsent
            log.warning(
                "account halted: %d dispatched cancels parked again",
                len(tickets),
                extra={"account": tickets[0].alias},
            )
        if tickets and (redelivered or halted):
            for ticket in tickets:
                self._advance(ticket, 0.0)
        elif tickets:
            members = [f"{spent}:{k}" for k in range(1, units + 1)]
            self._send(tickets, Spent(lane, members) if lane and spent and members else None)

    def reject(self, fields: Mapping[str, Any], request_id: str, reason: str) -> None:
        self.recorder.reject(fields, request_id, reason)

    def fail(self, fields: Mapping[str, Any], request_id: str, reason: str) -> None:
        """Give up on a request this worker cannot process (a bug): a final ``failed``."""
        self.recorder.fail(fields, request_id, reason)

    def kill(self, fields: Mapping[str, Any], task_id: str) -> None:
        """A kill-switch request (its own queue): cancel-all, then cover what is queued."""
        KillSwitch(self.rt, self.recorder, self.field_notes).run(fields, task_id)

    # -- stages -------------------------------------------------------------------------------

    def _claim(
        self, request: CancelRequest, request_id: str, account: AccountRuntime, *, attempt: bool
    ) -> Ticket | None:
        """Dedup: the ticket when this request owns the cancel, else None (already answered)."""

        def claim(_: Sequence[int], check: bool) -> list[Claim]:
            entry = ClaimEntry(
                request.account,
                request.identity,
                request_id,
                now_ms(),
                attempt=attempt,
                own_beat=check,
            )
            return [self.rt.claims.claim(entry)]

        [claimed] = self._own_beat.settle(1, claim, _stale)
        return self._ticket(request, request_id, account, claimed)

    def _ticket(
        self, request: CancelRequest, request_id: str, account: AccountRuntime, claim: Claim
    ) -> Ticket | None:
        """What a claim means: the ticket when this request owns the cancel, else None (answered
        here: a duplicate, a request already finished, or one a kill switch covered)."""
        if claim.verdict == "finished":
            return None
        if claim.verdict in ("taken", "held"):
            log.info(
                "not sent: %s",
                "another worker process took this delivery over"
                if claim.verdict == "taken"
                else "another delivery of this request is being run",
                extra={"requestId": request_id},
            )
            return None
        if claim.verdict == "duplicate":
            self.recorder.duplicate(request, request_id, claim.owner)
            return None
        ticket = Ticket(request, request_id, account, claim.attempts, claim.started_at_ms)
        if claim.kills and kill_covering(
            claim.kills, request.category, request.symbol, request.enqueuedAt
        ):
            self.recorder.finish(ticket, covered_by("switch"), None)
            return None
        return ticket

    def _claim_dispatched(
        self, unparked: Sequence[tuple[CancelRequest, str, AccountRuntime]]
    ) -> tuple[list[Ticket], bool]:
        """Every item's claim and the account's halt, in one round trip: the tickets this
        delivery owns, and whether the account was halted after dispatch took them."""
        entries = [
            ClaimEntry(r.account, r.identity, request_id, now_ms(), attempt=True)
            for r, request_id, _ in unparked
        ]
        halted = False

        def claim(indices: Sequence[int], check: bool) -> list[Claim]:
            nonlocal halted

            def fill(pipe: redis.client.Pipeline) -> None:
                for index in indices:
                    self.rt.claims.queue_claim(pipe, replace(entries[index], own_beat=check))
                pipe.hexists(self.rt.keys.halts(), unparked[0][0].account)  # nearest the send

            try:
                *replies, halted = run_pipeline(self.rt.redis, fill, self.rt.claims.scripts)
            except redis.RedisError as exc:
                raise StoreError(f"claiming dispatched cancels failed: {exc}") from exc
            return [parse_claim(raw) for raw in replies]

        claims = self._own_beat.settle(len(entries), claim, _stale)
        tickets = []
        for (request, request_id, account), claimed in zip(unparked, claims, strict=True):
            ticket = self._ticket(request, request_id, account, claimed)
            if ticket is not None:
                tickets.append(ticket)
        return tickets, bool(halted)

    def _observe_intake(self, ticket: Ticket, wait_ms: int) -> None:
        if ticket.attempts == 0 and ticket.request.enqueuedAt is not None:
            histogram = self.rt.metrics.queue_wait.labels(ticket.alias)
            safely(histogram.observe, wait_ms / 1000)

    def _unpark(
        self, item: Mapping[str, Any], task_id: str
    ) -> tuple[CancelRequest, str, AccountRuntime] | None:
        try:
            request_id, parked_at, fields = parked_fields(dict(item))
            request = parse_cancel(fields)
        except (KeyError, TypeError, ValueError, ContractError) as exc:
            log.error("malformed parked item in %s: %s", task_id, type(exc).__name__)
            return None
        account = self.rt.accounts.get(request.account)
        if account is None:
            self.recorder.reject(fields, request_id, "account: not in the accounts file")
            return None
        safely(
            self.rt.metrics.ratelimit_wait.labels(request.account).observe,
            max(now_ms() - parked_at, 0) / 1000,
        )
        return request, request_id, account

    def _behind(self, queue_wait_ms: int) -> bool:
        """The request waited long enough in the queue that the fleet is behind: batch it.

        Below that, a cancel goes alone at once (lowest latency); in a backlog, the dispatcher
        packs the parked ones into cancel-batch requests (measured: ``cancelq bench --only
        systems``, throughput rows)."""
        after = self.rt.settings.coalesce_after_ms
        return self.rt.settings.batching and after > 0 and queue_wait_ms >= after

    def _delay_s(self, attempts: int) -> float:
        """How long this pod must hold a send back: banned (the other pods send), or shutting
        down with a retry (it waits in its lane, not here); 0 when it may send now."""
        banned_s = self.rt.ban.remaining_s()
        if banned_s > 0:
            return min(banned_s, self.rt.settings.backoff_max_s)
        if self.rt.stopping.is_set() and attempts > 0:
            return 0.001
        return 0.0

    def _advance(self, ticket: Ticket, delay_s: float, *, coalesce: bool = False) -> None:
        """Rate limit: send now if the lane admits it, else park it for a dispatcher."""
        delay_s = max(delay_s, self._delay_s(ticket.attempts))
        admission = self.lanes.admit(**self._admit_args(ticket, delay_s, coalesce))
        self._admitted(ticket, admission)

    def _admit_args(self, ticket: Ticket, delay_s: float, coalesce: bool) -> dict[str, Any]:
        return {
            "account": ticket.alias,
            "category": ticket.category,
            "budget": self._budget(ticket),
            "request_id": ticket.request_id,
            "item_json": ticket.parked_json(),
            "delay_ms": int(delay_s * 1000),
            "claim_key": self.rt.keys.claim(ticket.alias, ticket.request.identity),
            "coalesce": coalesce,
        }

    def _admitted(self, ticket: Ticket, admission: Admission) -> None:
        """Admitted: send it now from this task (parked: the dispatcher has it)."""
        if admission.admitted:
            safely(self.rt.metrics.ratelimit_wait.labels(ticket.alias).observe, 0.0)
            lane = lane_name(ticket.alias, ticket.category)
            spent = Spent(lane, [admission.unit]) if admission.unit else None
            self._send([replace(ticket, attempts=admission.wait_ms or ticket.attempts + 1)], spent)

    def _budget(self, ticket: Ticket) -> Budget:
        settings = self.rt.settings
        account = ticket.account.account
        return Budget.for_account(
            account.rate_limit_per_s,
            ticket.category,
            margin=settings.ratelimit_margin,
            pad_ms=settings.ratelimit_window_pad_ms,
            batching=settings.batching,
            per_item=account.batch_counts_items,
        )

    def _send(self, tickets: Sequence[Ticket], spent: Spent | None) -> None:
        """Sign & submit, classify each reply, then record or try again. The budget units
        ``spent`` on the request are moved to the reply's time in the same round trip as the
        outcomes (``restamp.lua``: the lane's window then covers the exchange's)."""
        self._sync_clock()
        path, sent = self.submitter.send(tickets)
        endpoint = ENDPOINT_LABELS[path]
        self._observe_request(tickets[0], endpoint, sent[0][1], len(tickets))
        finals: list[tuple[Ticket, Final, ExchangeReply | None]] = []
        again: list[tuple[Ticket, Again]] = []
        actions: list[Action | None] = []
        for ticket, reply in sent:
            action = classify(reply, ticket.account.table) if reply is not None else None
            actions.append(action)
            self._count_reply(ticket, endpoint, reply)
            self._react(ticket, action, reply, endpoint)
            decision = self.retry_policy.decide(ticket, action, reply, now_ms())
            if isinstance(decision, Final):
                finals.append((ticket, decision, reply))
            else:
                again.append((ticket, decision))
        also = None
        if reply_came(sent):
            counts = self._signals(tickets, actions)

            def also(pipe: redis.client.Pipeline) -> None:
                lane = lane_name(tickets[0].alias, tickets[0].category)
                signals = SignalCounts.of(self.rt.keys, lane, counts, now_ms())
                units = spent.units if spent is not None else []
                window_ms = self._budget(tickets[0]).window_ms
                self.lanes.queue_restamp(pipe, lane, units, window_ms, signals)

        # one round trip for a whole batch's outcomes and the restamp
        self.recorder.finish_many(finals, also=also, also_scripts=self.lanes.scripts)
        for ticket, decision in again:
            self._again(ticket, decision)

    @staticmethod
    def _signals(tickets: Sequence[Ticket], actions: Sequence[Action | None]) -> dict[str, int]:
        """What ``cancelq top`` shows of this request: units sent, and whether the exchange
        answered it with a rate limit (10006/429) or an authentication failure."""
        per_item = tickets[0].account.account.batch_counts_items
        return {
            SENT: len(tickets) if per_item else 1,
            RATE_LIMITED: int(any(a is Action.RETRY_RATE_LIMIT for a in actions)),
            AUTH_FAILED: int(any(a is Action.AUTH_FAILURE for a in actions)),
        }

    def _again(self, ticket: Ticket, decision: Again) -> None:
        safely(self.rt.metrics.retries.labels(ticket.alias, decision.reason).inc)
        log.info(
            "retrying in %.3fs (%s)",
            decision.delay_s,
            decision.reason,
            extra={"requestId": ticket.request_id, "account": ticket.alias},
        )
        self._advance(ticket, decision.delay_s)

    def _react(
        self, ticket: Ticket, action: Action | None, reply: ExchangeReply | None, endpoint: str
    ) -> None:
        """What a reply says about the exchange, beyond this ticket."""
        if action is Action.RETRY_CLOCK:
            self.rt.clock.invalidate()
        elif action is Action.IP_BAN:
            self.rt.ban.start(self.rt.settings.ip_ban_pause_s)
            log.error(
                "HTTP 403 from the exchange: this pod stops sending",
                extra={"account": ticket.alias},
            )
        if reply is None:
            return
        pause_ms = self._pause_ms(ticket, action, reply)
        if pause_ms > 0:
            self.lanes.pause(ticket.alias, ticket.category, pause_ms, reply.code_label)
        if reply.limit is not None and endpoint == "cancel":
            self._observe_limit(ticket, reply.limit)

    def _pause_ms(self, ticket: Ticket, action: Action | None, reply: ExchangeReply) -> int:
        """How long the exchange wants this lane quiet: until X-Bapi-Limit-Reset-Timestamp on a
        10006/429, or a backoff when it is missing.

        A reply that merely says 0 remaining does not pause: the reset it names is counted
        from the exchange's arrival time, so pausing on it stretched every window by the
        dispatch-to-arrival delay (measured: 90% of the budget instead of 97%); the lane's own
        log already stops the next unit until the window frees."""
        if action is not Action.RETRY_RATE_LIMIT:
            return 0
        left_ms = (reply.limit_reset_ms or 0) - self.rt.clock.now_ms()
        if left_ms > 0:
            return left_ms
        # no usable reset time: Bybit's window is a rolling second, so never pause the whole
        # lane longer than that (the ticket itself backs off on its own)
        return min(int(self.retry_policy.backoff(ticket.attempts) * 1000), RATE_WINDOW_MS)

    def _observe_limit(self, ticket: Ticket, limit: int) -> None:
        """Tell the lane the exchange's limit, once per change (not a write per reply)."""
        lane = (ticket.alias, ticket.category)
        if self._limits_seen.get(lane) != limit:
            self.lanes.observe_limit(ticket.alias, ticket.category, limit)
            self._limits_seen[lane] = limit

    # -- observation --------------------------------------------------------------------------

    def _sync_clock(self) -> None:
        clock = self.rt.clock
        if clock.is_stale() and clock.sync(self._fetch_server_time):
            safely(self.rt.metrics.clock_offset.set, clock.offset_ms / 1000)

    def _fetch_server_time(self) -> ExchangeReply:
        try:
            return self.rt.client.server_time()
        except Exception:  # an unreachable exchange: the cancel's own request will say so
            return ExchangeReply(http_status=0, ret_code=None, ret_msg="unreachable")

    def _observe_request(
        self, ticket: Ticket, endpoint: str, reply: ExchangeReply | None, size: int
    ) -> None:
        metrics = self.rt.metrics
        account = ticket.alias
        safely(metrics.batch_size.labels(account, ticket.category).observe, size)
        if reply is None:
            return
        safely(metrics.exchange_request.labels(account, endpoint).observe, reply.elapsed_s)
        if reply.limit is not None:
            safely(metrics.ratelimit_limit.labels(account, endpoint).set, reply.limit)
        if reply.limit_remaining is not None:
            safely(metrics.ratelimit_remaining.labels(account, endpoint).set, reply.limit_remaining)

    def _count_reply(self, ticket: Ticket, endpoint: str, reply: ExchangeReply | None) -> None:
        code = reply.code_label if reply is not None else "network"
        counter = self.rt.metrics.exchange_responses
        safely(counter.labels(ticket.alias, ticket.category, endpoint, code).inc)


def _stale(claim: Claim) -> bool:
    """Not claimed: this pod's own heartbeat is stale (``worker/own_beat.py``)."""
    return claim.verdict == "stale"
