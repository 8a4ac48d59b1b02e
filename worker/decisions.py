"""What a reply means for one ticket: a final status, or another try after a delay.

Pure logic (:class:`RetryPolicy`) over the :class:`~cancelq.worker.retcodes.Action` a reply's
retCode maps to, the ticket's attempts and age, and the settings; side effects (pausing a lane,
resyncing the clock) are the pipeline's.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from cancelq.bybit.client import ExchangeReply
from cancelq.outcomes import Status
from cancelq.settings import Settings
from cancelq.worker.retcodes import Action
from cancelq.worker.tickets import Ticket

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
NETWORK = "network"


@dataclass(frozen=True)
class Final:
    status: Status
    keep: bool  # keep the identity deduplicated (False: a later request may try again)
    reason: str | None = None


@dataclass(frozen=True)
class Again:
    delay_s: float
    reason: str


Decision = Final | Again


class RetryPolicy:
    def __init__(self, settings: Settings, rng: random.Random | None = None) -> None:
        self._settings = settings
        self._rng = rng or random.Random()

    def decide(
        self, ticket: Ticket, action: Action | None, reply: ExchangeReply | None, now_ms: int
    ) -> Decision:
        """``action`` None means no reply at all (network)."""
        if action is None:
            return self.again_or_fail(ticket, NETWORK, None, now_ms)
        recheck_s = self._settings.not_found_recheck_s
        if action is Action.NOT_FOUND and (now_ms - ticket.started_ms) / 1000 < recheck_s:
            return self.again_or_fail(
                ticket, "not_found_recheck", self._settings.not_found_retry_s, now_ms
            )
        if action in FINAL:
            status, keep = FINAL[action]
            why = None
            if action is Action.UNKNOWN and reply is not None:
                why = f"unknown retCode {reply.code_label}"
            return Final(status, keep, why)
        return self.again_or_fail(ticket, RETRY_REASONS[action], self._delay(action), now_ms)

    def again_or_fail(
        self, ticket: Ticket, reason: str, delay_s: float | None, now_ms: int
    ) -> Decision:
        settings = self._settings
        delay = self.backoff(ticket.attempts) if delay_s is None else delay_s
        elapsed_s = (now_ms - ticket.started_ms) / 1000
        if ticket.attempts >= settings.max_attempts:
            why = f"gave up after {ticket.attempts} attempts (last: {reason})"
        elif elapsed_s + delay > settings.request_deadline_s:
            why = f"deadline of {settings.request_deadline_s:g}s reached (last: {reason})"
        else:
            return Again(delay, reason)
        if reason == "not_found_recheck":
            return Final(Status.NOT_FOUND, keep=True)
        return Final(Status.FAILED, keep=False, reason=why)

    def backoff(self, attempts: int) -> float:
        """Exponential backoff with full jitter, written here because the wait is scheduled
        (a lane's not-before time), not slept: retry libraries wrap a blocking call."""
        settings = self._settings
        ceiling = min(settings.backoff_max_s, settings.backoff_base_s * 2 ** max(attempts - 1, 0))
        return self._rng.uniform(0, ceiling)

    def _delay(self, action: Action) -> float | None:
        if action is Action.RETRY_CLOCK:
            return 0.0
        if action is Action.IP_BAN:
            return self._settings.backoff_max_s
        return None  # rate limits: the lane is paused until the reset; transient: backoff
