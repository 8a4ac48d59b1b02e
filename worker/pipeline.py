"""The cancel pipeline: validate → dedup → gate → sign & submit → classify → decide → record.

:meth:`CancelPipeline.handle` runs one attempt of one request and returns what the scheduler
must do next: nothing (:class:`Finished`, the outcome is recorded) or run it again after a delay
(:class:`Retry`). It never sleeps. Metrics and logging never fail a cancel.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cancelq.contract import REQUEST_ID_RE, CancelRequest, parse_cancel
from cancelq.errors import ContractError, ExchangeUnavailableError
from cancelq.outcomes import Outcome, Status
from worker.bybit_client import CANCEL, ENDPOINT_LABELS, ExchangeReply
from worker.claims import Claim
from worker.metrics import UNKNOWN_ACCOUNT, safely
from worker.policy import Action, classify
from worker.runtime import AccountRuntime, Runtime

log = logging.getLogger(__name__)

#: Final actions: the status they end in and whether the identity stays deduplicated.
FINAL: Mapping[Action, tuple[Status, bool]] = {
    Action.DONE: (Status.CANCELLED, True),
    Action.ALREADY_GONE: (Status.ALREADY_GONE, True),
    Action.TOO_LATE: (Status.TOO_LATE, True),
    Action.NOT_FOUND: (Status.NOT_FOUND, True),
    Action.REJECTED: (Status.REJECTED, False),
    Action.AUTH_FAILURE: (Status.AUTH_FAILED, False),
    Action.UNKNOWN: (Status.FAILED, False),
}
RETRY_REASONS: Mapping[Action, str] = {
    Action.RETRY_CLOCK: "clock",
    Action.RETRY_RATE_LIMIT: "rate_limit",
    Action.RETRY_TRANSIENT: "transient",
    Action.IP_BAN: "ip_ban",
}
LOG_LEVEL: Mapping[Status, int] = {
    Status.AUTH_FAILED: logging.ERROR,
    Status.FAILED: logging.ERROR,
    Status.REJECTED: logging.WARNING,
}


@dataclass(frozen=True)
class Retry:
    """Run the request again after ``delay_s``."""

    delay_s: float
    reason: str


@dataclass(frozen=True)
class Finished:
    """The request has its final outcome (None: it had one already)."""

    outcome: Outcome | None


Step = Retry | Finished


@dataclass(frozen=True)
class Attempt:
    request: CancelRequest
    request_id: str
    account: AccountRuntime
    claim: Claim
    started_ms: int


def now_ms() -> int:
    return int(time.time() * 1000)


class CancelPipeline:
    def __init__(self, runtime: Runtime, rng: random.Random | None = None) -> None:
        self.rt = runtime
        self._rng = rng or random.Random()

    # -- stages ------------------------------------------------------------------------------

    def handle(self, fields: Mapping[str, Any], task_id: str) -> Step:
        """One attempt of the request whose keyword arguments are ``fields``."""
        started = now_ms()
        try:
            request = parse_cancel(fields)
        except ContractError as exc:
            return self.reject(fields, task_id, str(exc), started)
        request_id = request.requestId or task_id
        account = self.rt.accounts.get(request.account)
        if account is None:
            return self.reject(fields, request_id, "account: not in the accounts file", started)
        claim = self.rt.claims.claim(request.account, request.identity, request_id, started)
        if claim.verdict == "finished":
            return Finished(None)
        if claim.verdict == "duplicate":
            return self._duplicate(request, request_id, claim.owner, started)
        attempt = Attempt(request, request_id, account, claim, started)
        if claim.attempts == 1 and request.enqueuedAt is not None:
            wait_s = max(started - request.enqueuedAt, 0) / 1000
            safely(self.rt.metrics.queue_wait.labels(request.account).observe, wait_s)
        gate = self._gate(attempt)
        return gate if gate is not None else self._submit(attempt)

    def _gate(self, attempt: Attempt) -> Step | None:
        """Hold the request back while this pod must not send (IP ban)."""
        banned_s = self.rt.ban.remaining_s()
        if banned_s > 0:
            delay = min(banned_s, self.rt.settings.backoff_max_s)
            return self._retry_or_fail(attempt, "ip_ban", None, delay)
        return None

    def _submit(self, attempt: Attempt) -> Step:
        self._sync_clock()
        try:
            reply = self.rt.client.post(
                CANCEL,
                attempt.request.exchange_body(),
                attempt.account.credentials,
                self.rt.clock.now_ms(),
            )
        except ExchangeUnavailableError as exc:
            self._count_reply(attempt, "network")
            log.warning(
                "exchange unreachable (%s)", exc.kind, extra=_context(attempt.request_id, attempt)
            )
            return self._retry_or_fail(attempt, "network", None, None)
        self._observe(attempt, reply)
        return self._decide(attempt, classify(reply, attempt.account.table), reply)

    def _decide(self, attempt: Attempt, action: Action, reply: ExchangeReply) -> Step:
        if action is Action.NOT_FOUND and self._within_recheck(attempt):
            delay = self.rt.settings.not_found_retry_s
            return self._retry_or_fail(attempt, "not_found_recheck", reply, delay)
        if action in FINAL:
            status, keep = FINAL[action]
            reason = f"unknown retCode {reply.code_label}" if action is Action.UNKNOWN else None
            return self._finish(attempt, status, reply, keep=keep, reason=reason)
        return self._retry_or_fail(
            attempt, RETRY_REASONS[action], reply, self._delay(action, reply)
        )

    # -- decisions ---------------------------------------------------------------------------

    def _within_recheck(self, attempt: Attempt) -> bool:
        elapsed_s = (now_ms() - attempt.claim.started_at_ms) / 1000
        return elapsed_s < self.rt.settings.not_found_recheck_s

    def _delay(self, action: Action, reply: ExchangeReply) -> float | None:
        if action is Action.RETRY_CLOCK:
            self.rt.clock.invalidate()
            return 0.0
        if action is Action.IP_BAN:
            self.rt.ban.start(self.rt.settings.ip_ban_pause_s)
            return self.rt.settings.backoff_max_s
        if action is Action.RETRY_RATE_LIMIT and reply.limit_reset_ms is not None:
            wait_s = (reply.limit_reset_ms - self.rt.clock.now_ms()) / 1000
            return min(max(wait_s, 0.01), self.rt.settings.backoff_max_s)
        return None

    def _backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter."""
        settings = self.rt.settings
        ceiling = min(settings.backoff_max_s, settings.backoff_base_s * 2 ** (attempts - 1))
        return self._rng.uniform(0, ceiling)

    def _retry_or_fail(
        self, attempt: Attempt, reason: str, reply: ExchangeReply | None, delay: float | None
    ) -> Step:
        settings = self.rt.settings
        delay_s = self._backoff(attempt.claim.attempts) if delay is None else delay
        elapsed_s = (now_ms() - attempt.claim.started_at_ms) / 1000
        if attempt.claim.attempts >= settings.max_attempts:
            why = f"gave up after {attempt.claim.attempts} attempts (last: {reason})"
        elif elapsed_s + delay_s > settings.request_deadline_s:
            why = f"deadline of {settings.request_deadline_s:g}s reached (last: {reason})"
        else:
            safely(self.rt.metrics.retries.labels(attempt.request.account, reason).inc)
            log.info(
                "retrying in %.3fs (%s)",
                delay_s,
                reason,
                extra=_context(attempt.request_id, attempt),
            )
            return Retry(delay_s, reason)
        if reason == "not_found_recheck":
            return self._finish(attempt, Status.NOT_FOUND, reply, keep=True, reason=None)
        return self._finish(attempt, Status.FAILED, reply, keep=False, reason=why)

    # -- records -----------------------------------------------------------------------------

    def _finish(
        self,
        attempt: Attempt,
        status: Status,
        reply: ExchangeReply | None,
        *,
        keep: bool,
        reason: str | None,
    ) -> Finished:
        request = attempt.request
        result = reply.result if reply is not None else {}
        outcome = Outcome(
            requestId=attempt.request_id,
            status=status,
            account=request.account,
            category=request.category,
            symbol=request.symbol,
            orderId=_str_or(result.get("orderId"), request.orderId),
            orderLinkId=_str_or(result.get("orderLinkId"), request.orderLinkId),
            retCode=reply.ret_code if reply is not None else None,
            retMsg=reply.ret_msg if reply is not None else None,
            reason=reason,
            attempts=attempt.claim.attempts,
            enqueuedAt=request.enqueuedAt,
            startedAt=attempt.claim.started_at_ms,
            sentAt=reply.sent_at_ms if reply is not None else None,
            answeredAt=reply.answered_at_ms if reply is not None else None,
            finishedAt=now_ms(),
        )
        self.rt.claims.finish(
            outcome, account=request.account, identity=request.identity, keep=keep
        )
        if reply is not None and request.enqueuedAt is not None:
            e2e_s = max(reply.answered_at_ms - request.enqueuedAt, 0) / 1000
            safely(
                self.rt.metrics.end_to_end.labels(request.account, request.category).observe, e2e_s
            )
        self._count_outcome(outcome)
        return Finished(outcome)

    def _duplicate(
        self, request: CancelRequest, request_id: str, owner: str, started: int
    ) -> Finished:
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
            finishedAt=now_ms(),
        )
        self.rt.claims.finish(outcome, account=None, identity=None, keep=False)
        safely(self.rt.metrics.dedup_hits.labels(request.account).inc)
        self._count_outcome(outcome)
        return Finished(outcome)

    def reject(
        self, fields: Mapping[str, Any], request_id: str, reason: str, started: int
    ) -> Finished:
        account = _field(fields, "account")
        outcome = Outcome(
            requestId=_request_id(fields, request_id),
            status=Status.REJECTED,
            reason=reason,
            account=account,
            category=_field(fields, "category"),
            symbol=_field(fields, "symbol"),
            orderId=_field(fields, "orderId"),
            orderLinkId=_field(fields, "orderLinkId"),
            startedAt=started,
            finishedAt=now_ms(),
        )
        self.rt.claims.finish(outcome, account=None, identity=None, keep=False)
        self._count_outcome(outcome)
        return Finished(outcome)

    # -- observation -------------------------------------------------------------------------

    def _sync_clock(self) -> None:
        clock = self.rt.clock
        if clock.is_stale() and clock.sync(self._fetch_server_time):
            safely(self.rt.metrics.clock_offset.set, clock.offset_ms / 1000)

    def _fetch_server_time(self) -> ExchangeReply:
        try:
            return self.rt.client.server_time()
        except ExchangeUnavailableError:
            return ExchangeReply(http_status=0, ret_code=None, ret_msg="unreachable")

    def _observe(self, attempt: Attempt, reply: ExchangeReply) -> None:
        account = attempt.request.account
        endpoint = ENDPOINT_LABELS[CANCEL]
        metrics = self.rt.metrics
        self._count_reply(attempt, reply.code_label)
        safely(metrics.exchange_request.labels(account, endpoint).observe, reply.elapsed_s)
        safely(metrics.batch_size.labels(account, attempt.request.category).observe, 1)
        if reply.limit is not None:
            safely(metrics.ratelimit_limit.labels(account, endpoint).set, reply.limit)
        if reply.limit_remaining is not None:
            safely(metrics.ratelimit_remaining.labels(account, endpoint).set, reply.limit_remaining)

    def _count_reply(self, attempt: Attempt, code: str) -> None:
        request = attempt.request
        counter = self.rt.metrics.exchange_responses
        safely(counter.labels(request.account, request.category, ENDPOINT_LABELS[CANCEL], code).inc)

    def _count_outcome(self, outcome: Outcome) -> None:
        account = outcome.account if outcome.account in self.rt.accounts else UNKNOWN_ACCOUNT
        safely(self.rt.metrics.outcomes.labels(account, outcome.status.value).inc)
        level = LOG_LEVEL.get(outcome.status, logging.INFO)
        log.log(
            level,
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


def _context(request_id: str, attempt: Attempt) -> dict[str, object]:
    request = attempt.request
    return {
        "requestId": request_id,
        "account": request.account,
        "orderId": request.orderId,
        "orderLinkId": request.orderLinkId,
    }


def _str_or(value: object, default: str | None) -> str | None:
    return value if isinstance(value, str) and value else default


_SAFE_TEXT = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _field(fields: Mapping[str, Any] | object, name: str) -> str | None:
    """A field of an invalid message, kept in its outcome only when it is short plain text."""
    if not isinstance(fields, Mapping):
        return None
    value = fields.get(name)
    return value if isinstance(value, str) and _SAFE_TEXT.fullmatch(value) else None


def _request_id(fields: Mapping[str, Any] | object, fallback: str) -> str:
    value = _field(fields, "requestId")
    return value if value is not None and REQUEST_ID_RE.fullmatch(value) else fallback
