"""The sweep over pending expectations, every ``sweep_interval_s``.

For each pending request (earliest deadline first, at most ``sweep_batch``), of an account this
replica owns:

1. first sight: if the stream already reported the order's final state (the push beat the
   worker's expectation), resolve it now;
2. past its deadline: ``unconfirmed``;
3. stream down, or accepted more than ``grace_s`` ago: a REST check (at most every
   ``fallback_retry_s`` per request, within the account's budget).

A request whose account is not in this confirmer's accounts file (or whose outcome is gone) is
settled as ``unconfirmed`` at its deadline by any replica (``SET NX``: once).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass

from cancelq.besteffort import safely
from cancelq.confirmations import Confirmation, ConfirmationRecord, result_for
from cancelq.confirmer.config import ConfirmerConfig
from cancelq.confirmer.fallback import Check
from cancelq.confirmer.metrics import ConfirmerMetrics
from cancelq.confirmer.resolver import Resolver
from cancelq.outcomes import Outcome


@dataclass(frozen=True)
class Ownership:
    """What the sweep asks the service: accounts owned now, stream state, all accounts known."""

    owned: Callable[[], Collection[str]]
    stream_up: Callable[[str], bool]
    known: Collection[str]


class Sweeper:
    def __init__(
        self,
        resolver: Resolver,
        ownership: Ownership,
        submit: Callable[[Check], bool],
        config: ConfirmerConfig,
        metrics: ConfirmerMetrics,
    ) -> None:
        self._resolver = resolver
        self._store = resolver.store
        self._own = ownership
        self._submit = submit
        self._config = config
        self._metrics = metrics
        self._outcomes: dict[str, Outcome] = {}
        self._seen: set[str] = set()
        self._next_check: dict[str, int] = {}

    def forget_seen(self) -> None:
        """A lease was (re)taken: look at every pending request afresh."""
        self._seen.clear()

    def sweep(self, now_ms: int) -> None:
        entries, total = self._store.pending(self._config.sweep_batch)
        safely(self._metrics.pending.set, total)
        self._load_outcomes([rid for rid, _ in entries])
        owned = set(self._own.owned())
        settled = self._first_sight([rid for rid, _ in entries], owned)
        expired: list[ConfirmationRecord] = []
        for rid, deadline in entries:
            if rid in settled:
                continue
            outcome = self._outcomes.get(rid)
            account = outcome.account if outcome else None
            if deadline <= now_ms and (account in owned or account not in self._own.known):
                expired.append(
                    self._resolver.record(rid, outcome, Confirmation.UNCONFIRMED, "deadline")
                )
            elif outcome is not None and account in owned:
                self._maybe_check(rid, outcome, now_ms)
        self._resolver.write(expired)

    def _load_outcomes(self, rids: list[str]) -> None:
        """Outcomes are immutable: read each once; drop what is no longer pending."""
        pending = set(rids)
        for cache in (self._outcomes, self._next_check):
            for rid in [r for r in cache if r not in pending]:
                del cache[rid]
        self._seen &= pending
        self._outcomes.update(self._store.outcomes([r for r in rids if r not in self._outcomes]))

    def _first_sight(self, rids: list[str], owned: set[str]) -> set[str]:
        """Resolve new requests whose order's final state is already known; their ids."""
        new = [
            (rid, outcome)
            for rid in rids
            if rid not in self._seen
            and (outcome := self._outcomes.get(rid)) is not None
            and outcome.account in owned
            and outcome.orderId
        ]
        self._seen.update(rid for rid, _ in new)
        finals = self._store.finals([(o.account or "", o.orderId or "") for _, o in new])
        records = []
        for rid, outcome in new:
            state = finals.get((outcome.account or "", outcome.orderId or ""))
            result = result_for(state.order_status) if state else None
            if state is not None and result is not None:
                records.append(self._resolver.record(rid, outcome, result, "stream", state))
        self._resolver.write(records)
        return {r.requestId for r in records}

    def _maybe_check(self, rid: str, outcome: Outcome, now_ms: int) -> None:
        account = outcome.account or ""
        up = self._own.stream_up(account)
        accepted = outcome.answeredAt or outcome.finishedAt or 0
        late = now_ms - accepted >= self._config.grace_s * 1000
        if (up and not late) or now_ms < self._next_check.get(rid, 0):
            return
        if not outcome.category or not outcome.orderId:
            return
        self._next_check[rid] = now_ms + int(self._config.fallback_retry_s * 1000)
        reason = "late" if up else "stream_down"
        self._submit(Check(account, outcome.category, outcome.orderId, reason))
