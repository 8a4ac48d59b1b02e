"""The record stage: one final outcome per request, with its metrics and its log line.

Writing the outcome, settling the dedup claim and, for an accepted cancel, registering the
confirmation expectation is one script (``finish.lua``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis
from redis.commands.core import Script

from cancelq.besteffort import safely
from cancelq.bybit.client import ExchangeReply
from cancelq.confirmations import Expectation
from cancelq.contract import REQUEST_ID_RE, CancelRequest
from cancelq.errors import NotReplicatedError, StoreError
from cancelq.outcomes import Outcome, Status
from cancelq.worker.decisions import Final
from cancelq.worker.delivery import mark_record_deleted
from cancelq.worker.metrics import UNKNOWN_ACCOUNT
from cancelq.worker.runtime import Runtime
from cancelq.worker.scripted_pipeline import run_pipeline
from cancelq.worker.tickets import Ticket, now_ms

log = logging.getLogger("cancelq.worker.pipeline")

LOG_LEVEL: Mapping[Status, int] = {
    Status.AUTH_FAILED: logging.ERROR,
    Status.FAILED: logging.ERROR,
    Status.REJECTED: logging.WARNING,
}


class Recorder:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def finish(self, ticket: Ticket, final: Final, reply: ExchangeReply | None) -> Outcome:
        return self.finish_many([(ticket, final, reply)])[0]

    def finish_many(
        self,
        finals: Sequence[tuple[Ticket, Final, ExchangeReply | None]],
        *,
        also: Callable[[redis.client.Pipeline], None] | None = None,
        also_scripts: Sequence[Script] = (),
    ) -> list[Outcome]:
        """Record final outcomes; several (a batch's) go in one pipelined round trip, with
        whatever ``also`` queues (its scripts in ``also_scripts``)."""
        outcomes = [_outcome(ticket, final, reply) for ticket, final, reply in finals]
        if also is not None or len(finals) > 1:
            self._store_many(
                outcomes, [(t.request, f.keep) for t, f, _ in finals], also, also_scripts
            )
        elif finals:
            ticket, final, _ = finals[0]
            request = ticket.request
            self._settle(
                outcomes[0],
                account=request.account,
                identity=request.identity,
                keep=final.keep,
                expectation=self._expectation(outcomes[0], request),
            )
        for (ticket, _, reply), outcome in zip(finals, outcomes, strict=True):
            request = ticket.request
            if reply is not None and request.enqueuedAt is not None:
                e2e_s = max(reply.answered_at_ms - request.enqueuedAt, 0) / 1000
                histogram = self.rt.metrics.end_to_end.labels(request.account, request.category)
                safely(histogram.observe, e2e_s)
            self._count(outcome)
        return outcomes

    def duplicate(self, request: CancelRequest, request_id: str, owner: str) -> Outcome:
        started = now_ms()
        outcome = Outcome(
            requestId=request_id,
            status=Status.DUPLICATE,
            duplicateOf=owner,
            account=request.account,
            category=request.category,
            symbol=request.symbol,
            orderId=request.orderId,
            orderLinkId=request.orderLinkId,
            enqueuedAt=request.enqueuedAt,
            startedAt=started,
            finishedAt=started,
        )
        self._settle(outcome, account=None, identity=None, keep=False)
        safely(self.rt.metrics.dedup_hits.labels(request.account).inc)
        self._count(outcome)
        return outcome

    def reject(self, fields: Mapping[str, Any] | object, request_id: str, reason: str) -> Outcome:
        return self._unprocessed(fields, request_id, reason, Status.REJECTED)

    def fail(self, fields: Mapping[str, Any] | object, request_id: str, reason: str) -> Outcome:
        return self._unprocessed(fields, request_id, reason, Status.FAILED)

    def _unprocessed(
        self, fields: Mapping[str, Any] | object, request_id: str, reason: str, status: Status
    ) -> Outcome:
        started = now_ms()
        outcome = Outcome(
            requestId=_request_id(fields, request_id),
            status=status,
            reason=reason,
            account=_field(fields, "account"),
            category=_field(fields, "category"),
            symbol=_field(fields, "symbol"),
            orderId=_field(fields, "orderId"),
            orderLinkId=_field(fields, "orderLinkId"),
            startedAt=started,
            finishedAt=started,
        )
        self._settle(outcome, account=None, identity=None, keep=False)
        self._count(outcome)
        return outcome

    def store_plain(self, outcome: Outcome) -> None:
        """Record an outcome that settles no claim (a kill request's own); counted, not logged."""
        self._settle(outcome, account=None, identity=None, keep=False)
        account = outcome.account if outcome.account in self.rt.accounts else UNKNOWN_ACCOUNT
        safely(self.rt.metrics.outcomes.labels(account, outcome.status.value).inc)

    def _expectation(self, outcome: Outcome, request: CancelRequest) -> Expectation | None:
        """What the confirmer must follow for an accepted cancel; None for anything else, or
        when no confirmer runs (``CANCELQ_CONFIRM_DEADLINE_S=0``)."""
        deadline_s = self.rt.settings.confirm_deadline_s
        if outcome.status is not Status.CANCELLED or outcome.orderId is None or deadline_s <= 0:
            return None
        return Expectation(
            account=request.account,
            order_id=outcome.orderId,
            deadline_ms=now_ms() + int(deadline_s * 1000),
            ttl_s=int(deadline_s) + 3600,
        )

    def _store_many(
        self,
        outcomes: Sequence[Outcome],
        requests: Sequence[tuple[CancelRequest, bool]],
        also: Callable[[redis.client.Pipeline], None] | None = None,
        also_scripts: Sequence[Script] = (),
    ) -> None:
        """Outcomes, claims, confirmation expectations and ``also`` in one pipeline (with the
        unacked record of a delivery that ends with one of the outcomes)."""
        claims = self.rt.claims
        ending = [claims.ending(outcome.requestId) for outcome in outcomes]

        def fill(pipe: redis.client.Pipeline) -> None:
            if also is not None:
                also(pipe)
            for outcome, (request, keep), tag in zip(outcomes, requests, ending, strict=True):
                claims.finish(
                    outcome,
                    account=request.account,
                    identity=request.identity,
                    keep=keep,
                    client=pipe,
                    expectation=self._expectation(outcome, request),
                    ends_delivery=tag,
                )

        self._run(fill, [*claims.scripts, *also_scripts])
        for tag in ending:
            if tag:
                mark_record_deleted(tag)

    def _settle(
        self,
        outcome: Outcome,
        *,
        account: str | None,
        identity: str | None,
        keep: bool,
        expectation: Expectation | None = None,
    ) -> None:
        """One outcome (``finish.lua``, with the unacked record of a delivery that ends with
        it); then ``WAIT`` when ``CANCELQ_OUTCOME_MIN_REPLICAS``."""
        claims = self.rt.claims
        tag = claims.ending(outcome.requestId)
        if not self.rt.settings.outcome_min_replicas:
            claims.finish(
                outcome,
                account=account,
                identity=identity,
                keep=keep,
                expectation=expectation,
                ends_delivery=tag,
            )
        else:
            self._run(
                lambda pipe: claims.finish(
                    outcome,
                    account=account,
                    identity=identity,
                    keep=keep,
                    client=pipe,
                    expectation=expectation,
                    ends_delivery=tag,
                ),
                claims.scripts,
            )
        if tag:
            mark_record_deleted(tag)

    def _run(
        self, fill: Callable[[redis.client.Pipeline], object], scripts: Sequence[Script]
    ) -> None:
        """Run the writes ``fill`` queues in one pipeline, ending with ``WAIT`` when outcomes
        must reach replicas (same connection: WAIT counts this connection's writes). Fewer
        replicas in time is counted and logged: the outcome is on the master; a failover before
        a replica has it runs the cancel again from the queue (the exchange says "already
        gone")."""
        settings = self.rt.settings
        replicas = settings.outcome_min_replicas

        def fill_then_wait(pipe: redis.client.Pipeline) -> None:
            fill(pipe)
            if replicas:
                pipe.wait(replicas, settings.outcome_replica_timeout_ms)

        try:
            replies = run_pipeline(self.rt.redis, fill_then_wait, scripts)
        except redis.RedisError as exc:
            raise StoreError(f"recording outcomes failed: {exc}") from exc
        if replicas and int(replies[-1]) < replicas:
            short = NotReplicatedError(
                f"outcomes recorded on the master, but only {replies[-1]} of {replicas} "
                f"replicas held them within {settings.outcome_replica_timeout_ms} ms",
                acked=int(replies[-1]),
                wanted=replicas,
                timeout_ms=settings.outcome_replica_timeout_ms,
            )
            self.rt.metrics.store_error(short)
            log.warning("%s", short)

    def _count(self, outcome: Outcome) -> None:
        account = outcome.account if outcome.account in self.rt.accounts else UNKNOWN_ACCOUNT
        safely(self.rt.metrics.outcomes.labels(account, outcome.status.value).inc)
        log.log(
            LOG_LEVEL.get(outcome.status, logging.INFO),
            "cancel %s%s",
            outcome.status.value,
            f": {outcome.reason}" if outcome.reason else "",
            extra={
                "requestId": outcome.requestId,
                "account": account,
                "orderId": outcome.orderId,
                "orderLinkId": outcome.orderLinkId,
                "retCode": outcome.retCode,
                "status": outcome.status.value,
            },
        )


def _outcome(ticket: Ticket, final: Final, reply: ExchangeReply | None) -> Outcome:
    request = ticket.request
    result = reply.result if reply is not None else {}
    return Outcome(
        requestId=ticket.request_id,
        status=final.status,
        account=request.account,
        category=request.category,
        symbol=request.symbol,
        orderId=_str_or(result.get("orderId"), request.orderId),
        orderLinkId=_str_or(result.get("orderLinkId"), request.orderLinkId),
        retCode=reply.ret_code if reply is not None else None,
        retMsg=reply.ret_msg if reply is not None else None,
        reason=final.reason,
        attempts=ticket.attempts,
        enqueuedAt=request.enqueuedAt,
        startedAt=ticket.started_ms,
        sentAt=reply.sent_at_ms if reply is not None else None,
        answeredAt=reply.answered_at_ms if reply is not None else None,
        finishedAt=now_ms(),
    )


def _str_or(value: object, default: str | None) -> str | None:
    return value if isinstance(value, str) and value else default


def _field(fields: Mapping[str, Any] | object, name: str) -> str | None:
    """A field of an invalid message, kept in its outcome only when it is short plain text."""
    if not isinstance(fields, Mapping):
        return None
    value = fields.get(name)
    return value if isinstance(value, str) and REQUEST_ID_RE.fullmatch(value) else None


def _request_id(fields: Mapping[str, Any] | object, fallback: str) -> str:
    value = _field(fields, "requestId")
    return value if value is not None else fallback
