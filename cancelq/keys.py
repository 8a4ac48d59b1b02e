"""Every Redis key cancelq uses, built in one place under one prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Key builder. ``prefix`` is ``Settings.key_prefix``; ``queue`` is the Celery queue list."""

    prefix: str = "cancelq"
    queue: str = "cancelq"

    def outcome(self, request_id: str) -> str:
        """JSON of a request's final outcome (string, with TTL)."""
        return f"{self.prefix}:outcome:{request_id}"

    def outbox(self) -> str:
        """Sorted set of enqueued requests without a final outcome yet (score: ms last seen
        waiting); written by producers with the message, cleared by the outcome."""
        return f"{self.prefix}:outbox"

    def outbox_messages(self) -> str:
        """Hash request id -> the message as pushed, to push it again if the broker lost it."""
        return f"{self.prefix}:outbox:msg"

    def claim(self, account: str, identity: str) -> str:
        """Dedup claim of one cancel identity (hash: owner, state, lease, attempts, startedAt)."""
        return f"{self.prefix}:claim:{account}:{identity}"

    def no_claim(self) -> str:
        """A name no claim has (a claim's is ``<prefix>:claim:<account>:<identity>``): what
        finish.lua is given for an outcome that settles no claim. Inside the prefix, so a
        Redis ACL limited to the prefix's keys allows it (an empty key name would not match)."""
        return f"{self.prefix}:claim:"

    def kill_marker(self, account: str, category: str) -> str:
        """Hash of kill scopes of (account, category): scope -> enqueuedAt ms of the kill.
        Cancels enqueued before it, in scope, are covered by the kill and never sent."""
        return f"{self.prefix}:kill:{account}:{category}"

    def dead_letters(self) -> str:
        """Stream of messages that could not be read as a cancel."""
        return f"{self.prefix}:dead-letters"

    def lane(self, name: str) -> str:
        """Sorted set of cancels parked in a lane (one per account and category), by not-before.

        ``<lane>:log`` (units spent in the window), ``<lane>:pause`` (exchange said stop until),
        ``<lane>:cfg`` (budget) sit beside it; dispatch.lua derives the same names.
        """
        return f"{self.prefix}:lane:{name}"

    def lane_log(self, name: str) -> str:
        """A lane's budget log (zset of units spent, score ms)."""
        return f"{self.lane(name)}:log"

    def lane_pause(self, name: str) -> str:
        """Until when the exchange told a lane to stop (string, ms on the Redis clock)."""
        return f"{self.lane(name)}:pause"

    def lane_config(self, name: str) -> str:
        """A lane's budget (hash: limit, window, batch, per_item, exchange_limit)."""
        return f"{self.lane(name)}:cfg"

    def lane_pause_reason(self, name: str) -> str:
        """Why a lane is paused (string: ``10006``, ``http_429`` ...; same expiry as
        ``<lane>:pause``): what ``cancelq top`` shows beside the pause."""
        return f"{self.lane(name)}:pause:why"

    def halts(self) -> str:
        """Hash of halted accounts: alias -> JSON of the halt (who, why, when). admit.lua parks
        and dispatch.lua holds every cancel of a halted account; ``cancelq resume`` deletes it."""
        return f"{self.prefix}:halts"

    def halt_audit(self) -> str:
        """Stream of every halt and resume (account, action, by, reason), bounded."""
        return f"{self.prefix}:halts:audit"

    def signals(self, bucket: int) -> str:
        """Hash of what the exchange said in one 10 s bucket (``cancelq/signals.py``):
        ``<lane>|<signal>`` -> count; best effort, short TTL."""
        return f"{self.prefix}:signals:{bucket}"

    def lanes_ready(self) -> str:
        """Sorted set of lanes holding parked cancels, by the time they are worth a look."""
        return f"{self.prefix}:lanes:ready"

    def lanes_wake(self) -> str:
        """Pub/sub channel: a lane became ready sooner than any other (a parking, a resume);
        dispatchers, which sleep until the earliest lane is due, wake and look."""
        return f"{self.prefix}:lanes:wake"

    def parked_item(self, request_id: str) -> str:
        """JSON of a parked cancel (what dispatch puts in its message)."""
        return f"{self.prefix}:item:{request_id}"

    def confirm_pending(self) -> str:
        """Sorted set of accepted cancels awaiting confirmation (score = deadline ms)."""
        return f"{self.prefix}:confirm:pending"

    def confirm_watch(self, account: str, order_id: str) -> str:
        """Set of request ids whose confirmation is the final state of this order."""
        return f"{self.prefix}:confirm:watch:{account}:{order_id}"

    def confirmation(self, request_id: str) -> str:
        """JSON of a request's confirmation (string, with TTL)."""
        return f"{self.prefix}:confirmation:{request_id}"

    def confirm_lease(self, account: str) -> str:
        """Owner of an account's private stream (string: confirmer replica id, PX expiry)."""
        return f"{self.prefix}:confirm:lease:{account}"

    def confirm_final(self, account: str, order_id: str) -> str:
        """An order's final state seen on the stream (JSON, short TTL): covers a confirmation
        registered after the stream message arrived."""
        return f"{self.prefix}:confirm:final:{account}:{order_id}"

    def confirm_bucket(self, account: str) -> str:
        """Token bucket of the confirmer's REST fallback (hash: tokens, at)."""
        return f"{self.prefix}:confirm:bucket:{account}"

    def pods(self) -> str:
        """Zset of worker processes (pod id -> Redis-clock ms of its last heartbeat)."""
        return f"{self.prefix}:pods"

    def pod_unacked(self, pod_id: str) -> str:
        """Kombu's unacked hash of one worker process (delivery tag -> [message, exchange,
        routing key]): what that process holds, taken over when it dies."""
        return f"{self.prefix}:unacked:{pod_id}"

    def no_record(self) -> str:
        """A name no unacked hash has (a process's is ``<prefix>:unacked:<pod id>``): what
        finish.lua is given when no delivery ends with the outcome (inside the prefix, as
        :meth:`no_claim`)."""
        return f"{self.prefix}:unacked:"

    def pod_unacked_index(self, pod_id: str) -> str:
        """Kombu's unacked index of one worker process (delivery tag -> Unix time taken)."""
        return f"{self.prefix}:unacked_index:{pod_id}"

    def pod_unacked_mutex(self, pod_id: str) -> str:
        """Kombu's lock around one worker process's visibility-timeout restore."""
        return f"{self.prefix}:unacked_mutex:{pod_id}"

    @property
    def unacked(self) -> str:
        """Kombu's shared hash of messages delivered and not acknowledged yet: used by workers
        of an older cancelq (each process now has its own, :meth:`pod_unacked`)."""
        return "unacked"

    @property
    def unacked_index(self) -> str:
        """Kombu's shared unacked index (delivery tag -> Unix time taken)."""
        return "unacked_index"
