"""Dedup claims and final outcome records: the two Redis scripts of the pipeline.

A cancel's identity is (account, category, orderLinkId, or orderId when there is no link id).
The first request claims it; a duplicate arriving while it is in flight or after it finished
points at it and sends nothing. A claim whose lease is not renewed (its worker died) is taken
over, so a crash never blocks a cancel. See ``claim.lua`` and ``finish.lua``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from importlib import resources
from typing import Any, Literal

import redis
from redis.commands.core import Script

from cancelq.confirmations import Expectation
from cancelq.errors import StoreError
from cancelq.keys import Keys
from cancelq.outcomes import Outcome
from cancelq.replies import as_text
from cancelq.worker.delivery import current_tag, ending_with
from cancelq.worker.scripted_pipeline import queue_script

Verdict = Literal["own", "duplicate", "finished", "held", "taken", "stale"]


@dataclass(frozen=True)
class Claim:
    verdict: Verdict
    owner: str
    attempts: int
    started_at_ms: int
    kills: dict[str, int] = field(default_factory=dict)  # kill scope -> enqueuedAt of the kill


def _script(name: str) -> str:
    return resources.files("cancelq.worker").joinpath(name).read_text(encoding="utf-8")


class ClaimStore:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        lease_s: float,
        dedup_ttl_s: int,
        outcome_ttl_s: int,
        pod_id: str = "",
        own_beat_within_s: float = 0.0,
    ) -> None:
        """``pod_id``: the worker process claiming, whose unacked hash fences its claims
        (``claim.lua``: "taken", "held"); "" for callers outside a worker.
        ``own_beat_within_s``: with ``pod_id``, a claim needs the pod's last heartbeat to be at
        most this old ("stale" otherwise; 0: not checked), see :func:`own_beat_window_s`."""
        self._keys = keys
        self._pod_id = pod_id
        self._held_in = keys.pod_unacked(pod_id) if pod_id else ""
        self._held_index = keys.pod_unacked_index(pod_id) if pod_id else ""
        self._own_beat_within_ms = int(own_beat_within_s * 1000) if pod_id else 0
        self._lease_ms = int(lease_s * 1000)
        self._dedup_ttl_ms = dedup_ttl_s * 1000
        self._outcome_ttl_ms = outcome_ttl_s * 1000
        self._claim = client.register_script(_script("claim.lua"))
        self._finish = client.register_script(_script("finish.lua"))

    @property
    def scripts(self) -> list[Script]:
        """The scripts a pipeline of claims or outcomes may call (reloaded after NOSCRIPT)."""
        return [self._claim, self._finish]

    def ending(self, request_id: str) -> str:
        """The tag of the delivery that ends with ``request_id`` (``worker/delivery.py``) when
        this store can delete its record (a worker's, with its unacked keys), else "": the one
        answer :meth:`finish` and the intake both act on, so a delivery is marked deleted only
        where its record was."""
        return ending_with(request_id) if self._held_in else ""

    @property
    def record_index(self) -> str:
        """This process's unacked index (kombu's), "" outside a worker: what the intake needs
        to delete the record of a delivery that ends with its parking."""
        return self._held_index

    @property
    def lease_ms(self) -> int:
        return self._lease_ms

    def claim(self, entry: ClaimEntry) -> Claim:
        """Claim (or renew) the identity of ``entry`` (``entry.attempt``: an exchange attempt
        starts now; ``entry.own_beat=False``: without the check of this pod's own heartbeat)."""
        keys, args = self.claim_call(entry)
        try:
            raw = self._claim(keys=keys, args=args)
        except redis.RedisError as exc:
            raise StoreError(f"claiming a cancel failed: {exc}") from exc
        return parse_claim(raw)

    def queue_claim(self, pipe: redis.client.Pipeline, entry: ClaimEntry) -> None:
        """Queue one claim on ``pipe`` (run it with ``run_pipeline`` and :attr:`scripts`;
        :func:`parse_claim` reads its reply)."""
        keys, args = self.claim_call(entry)
        queue_script(pipe, self._claim, keys, args)

    def claim_call(self, entry: ClaimEntry) -> tuple[list[str], list[str | int]]:
        """KEYS and ARGV of ``claim.lua`` (also composed into the intake script)."""
        account, identity, request_id = entry.account, entry.identity, entry.request_id
        category = identity.split(":", 1)[0]
        keys = [
            self._keys.claim(account, identity),
            self._keys.outcome(request_id),
            self._keys.kill_marker(account, category),
        ]
        args: list[str | int] = [
            request_id,
            self._lease_ms,
            self._dedup_ttl_ms,
            entry.now_ms,
            int(entry.attempt),
            self._held_in,
            current_tag() if self._held_in else "",
            self._keys.pods(),
            self._pod_id,
            self._own_beat_within_ms if entry.own_beat else 0,
        ]
        return keys, args

    def finish(
        self,
        outcome: Outcome,
        *,
        account: str | None,
        identity: str | None,
        keep: bool,
        client: redis.client.Pipeline | None = None,
        expectation: Expectation | None = None,
        ends_delivery: str = "",
    ) -> bool:
        """Record ``outcome`` (first one wins) and keep or release the identity's claim; with
        ``expectation``, register it in the same step (only when the outcome is new); with
        ``ends_delivery`` (a delivery tag :meth:`ending` gave), delete that delivery's unacked
        record in the same step (``worker/delivery.py``: the caller marks it deleted once the
        script has run).

        With ``client`` (a pipeline) the script is only queued by SHA (run the pipeline with
        :func:`worker.scripted_pipeline.run_pipeline` and :attr:`scripts`); returns False then.
        """
        if account is None or identity is None:
            claim = self._keys.no_claim()
        else:
            claim = self._keys.claim(account, identity)
        keys = [
            self._keys.outcome(outcome.requestId),
            self._keys.outbox(),
            self._keys.outbox_messages(),
            claim,
        ]
        args: list[str | int] = [
            outcome.to_json(),
            self._outcome_ttl_ms,
            outcome.requestId,
            int(keep),
            self._dedup_ttl_ms,
        ]
        if ends_delivery and self._held_in:
            keys += [self._held_in, self._held_index]
            args.append(ends_delivery)
        else:
            keys += [self._keys.no_record(), self._keys.no_record()]
            args.append("")
        if expectation is not None:
            keys.extend(expectation.script_keys(self._keys, outcome.requestId))
            args.extend(expectation.script_args())
        if client is not None:
            queue_script(client, self._finish, keys, args)
            return False
        try:
            return bool(self._finish(keys=keys, args=args))
        except redis.RedisError as exc:
            raise StoreError(f"recording an outcome failed: {exc}") from exc


@dataclass(frozen=True)
class ClaimEntry:
    account: str
    identity: str
    request_id: str
    now_ms: int
    _: KW_ONLY
    attempt: bool
    own_beat: bool = True


def own_beat_window_s(pod_ttl_s: float, pod_beat_s: float) -> float:
    """How old a pod's own last heartbeat may be for it to claim: half the pod TTL (at least
    two beats, at most the TTL). The rest of the TTL is what a send may take before the others
    can take the pod for dead and send a copy (a pod frozen or cut off since its last beat);
    with the defaults (2 s, 0.5 s) a claim needs a beat of the last second."""
    return min(max(pod_ttl_s / 2, 2 * pod_beat_s), pod_ttl_s)


def parse_claim(raw: Sequence[Any]) -> Claim:
    """A Claim from ``claim.lua``'s reply."""
    verdict, owner, attempts, started, marker = raw
    kills = {as_text(marker[i]): int(marker[i + 1]) for i in range(0, len(marker), 2)}
    return Claim(as_text(verdict), as_text(owner), int(attempts), int(started), kills)  # type: ignore[arg-type]
