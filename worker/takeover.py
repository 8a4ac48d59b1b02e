"""Takeover: what a dead worker process held goes back to the queue within seconds.

kombu records each message a process takes in an unacked hash and re-delivers it only after
the visibility timeout (300 s by default). cancelq gives every worker process its own unacked
hash (``<prefix>:unacked:<pod>``, a kombu transport option) and a heartbeat
(``worker/pods.py``); every worker runs :meth:`Takeover.sweep` every ``pod_beat_s``: for each
pod in the registry whose last beat is older than the pod TTL, every message in its hash is
pushed back at the consumer end of its queue (``takeover.lua``: atomically, once, and only
while that pod is still dead), marked redelivered as kombu marks its own restores. The
registry's scores are the pods' last beats on the Redis clock, so a sweep finds the dead with
one ZRANGEBYSCORE: its cost does not grow with the number of live pods. The visibility timeout
stays as the last resort for a live process that holds a message too long, and for kombu's shared
unacked hash (``unacked``) that workers of an older cancelq use: during a rolling upgrade the
sweep hands back what that hash holds past the visibility timeout, as kombu itself would.

What this hands back: messages the process had prefetched or was running (cancels, kills, and
dispatched batches, which the submit task re-parks instead of sending: their budget was spent
by the dead process). What it does not: a message between kombu's BRPOP and its unacked record
(microseconds; the outbox sweep pushes it again) and requests already on the wire (the
exchange answers the repeat "already gone").

A live process's own records can outlive its hold on them too: an ack (kombu's HDEL) that the
old master took and never replicated before a failover, a restore kombu could not write when
its connection was lost (it forgets the messages anyway). Nobody would hand those back before
the visibility timeout (300 s) while the process lives. So every full sweep, a process also
reads its own index for records older than ``ORPHAN_AFTER_S`` and hands back those it no
longer holds (``held``: kombu's in-memory state, ``worker/host/kombu_channel.py``); a copy of
one that is still running is refused by its claim, a finished one is answered from its outcome.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import redis

from cancelq.errors import StoreError
from cancelq.keys import Keys
from cancelq.replies import as_text, time_ms

log = logging.getLogger(__name__)

#: A pod name that never beats: kombu's shared unacked hash has no beat in the registry.
LEGACY = "kombu-shared-unacked"
#: Every beat looks at pods dead for at most this long (or twice the pod TTL); older ones are
#: looked at by the full sweep only, every FULL_SWEEP_MS.
RECENT_MS = 5_000
FULL_SWEEP_MS = 10_000
#: A record of this process's that it does not hold is an orphan once it is this old: kombu
#: writes the record before it notes the message in memory (microseconds apart).
ORPHAN_AFTER_S = 5.0
#: No pod: takeover.lua's liveness check is for others; a process hands back its own orphans.
SELF = ""


@dataclass(frozen=True)
class TakeoverSweep:
    dead: int  # pods found dead that still held messages
    restored: int  # messages handed back to their queues
    forgotten: int  # dead pods dropped from the registry (nothing held for forget_after_s)
    legacy: int = 0  # messages of kombu's shared unacked hash past the visibility timeout
    orphans: int = 0  # this process's own records it no longer held, handed back


def redelivered(entry: bytes | str) -> tuple[str, str]:
    """(routing key, message JSON marked redelivered) of one kombu unacked-hash entry."""
    message, _exchange, routing_key = json.loads(entry)
    if isinstance(message.get("headers"), dict):
        message["headers"]["redelivered"] = True
    properties = message.get("properties")
    if isinstance(properties, dict) and isinstance(properties.get("delivery_info"), dict):
        properties["delivery_info"]["redelivered"] = True
    return str(routing_key), json.dumps(message)


class Takeover:
    """Hands back the messages of dead worker processes (every worker runs it)."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        me: str,
        queues: Iterable[str],
        pod_ttl_s: float = 2.0,
        visibility_timeout_s: float = 300.0,
        forget_after_s: float = 3600.0,
        legacy_batch: int = 100,
        held: Callable[[], Collection[str]] | None = None,
    ) -> None:
        """``held``: the delivery tags this process holds now (None: its own records are not
        checked)."""
        self._redis = client
        self._held = held
        self._keys = keys
        self._me = me
        self._queues = list(queues)
        self._ttl_ms = int(pod_ttl_s * 1000)
        self._recent_ms = max(RECENT_MS, 2 * self._ttl_ms)
        self._forget_after_ms = int(forget_after_s * 1000)
        self._visibility_timeout_s = visibility_timeout_s
        self._legacy_batch = legacy_batch
        self._last_full_ms = -FULL_SWEEP_MS
        script = resources.files("cancelq.worker").joinpath("takeover.lua").read_text("utf-8")
        self._restore = client.register_script(script)

    def sweep(self, now_ms: int | None = None) -> TakeoverSweep:
        """One sweep at ``now_ms`` on the Redis clock (the pod beat's reading; read here when
        None)."""
        try:
            if now_ms is None:
                now_ms = time_ms(self._redis.time())
            return self._sweep(now_ms)
        except redis.RedisError as exc:
            raise StoreError(f"takeover sweep failed: {exc}") from exc

    def _sweep(self, now_ms: int) -> TakeoverSweep:
        """Each beat: the pods whose last beat is older than the TTL, and recent enough that
        nobody may have taken them over yet (one ZRANGEBYSCORE, whatever the fleet's size).
        Every FULL_SWEEP_MS: every dead pod (a late write into a hand-back's hash, a sweeper
        that failed), the forgetting of old ones and kombu's shared hash."""
        full = now_ms - self._last_full_ms >= FULL_SWEEP_MS
        dead_before = now_ms - self._ttl_ms
        low: float | str = "-inf" if full else f"({dead_before - self._recent_ms}"
        registry: list[Any] = self._redis.zrangebyscore(
            self._keys.pods(), low, f"({dead_before}", withscores=True
        )
        pods = {as_text(pod): float(score) for pod, score in registry}
        pods.pop(self._me, None)
        swept = self._sweep_pods(pods, now_ms, forget=full)
        if not full:
            return swept
        self._last_full_ms = now_ms
        return replace(
            swept, legacy=self._sweep_legacy(now_ms / 1000), orphans=self._hand_back_orphans()
        )

    def _sweep_pods(self, pods: Mapping[str, float], now_ms: int, *, forget: bool) -> TakeoverSweep:
        """``pods``: other registered pods whose beat has expired, and the Redis-clock ms of
        their last beat (takeover.lua checks, in the step of each hand-back, that the pod has
        not beaten again since)."""
        restored = forgotten = held = 0
        for pod, last_beat_ms in pods.items():
            entries: dict[Any, Any] = self._redis.hgetall(self._keys.pod_unacked(pod))
            if entries:
                held += 1
                restored += self._hand_back(pod, entries)
            elif forget and last_beat_ms < now_ms - self._forget_after_ms:
                self._forget(pod)
                forgotten += 1
        if restored:
            log.warning("took over %d messages of %d dead worker process(es)", restored, held)
        return TakeoverSweep(held, restored, forgotten)

    def _sweep_legacy(self, now_s: float) -> int:
        """kombu's shared unacked hash: what an older worker held past the visibility timeout
        (kombu's own rule; of kombu's restore and this one, the first wins, the other finds
        nothing)."""
        index, unacked = self._keys.unacked_index, self._keys.unacked
        ceiling = now_s - self._visibility_timeout_s
        tags: list[Any] = self._redis.zrangebyscore(
            index, "-inf", ceiling, start=0, num=self._legacy_batch
        )
        if not tags:
            return 0
        values: list[Any] = self._redis.hmget(unacked, tags)
        entries = {tag: entry for tag, entry in zip(tags, values, strict=True) if entry}
        restored = self._hand_back(LEGACY, entries, keys=[self._keys.pods(), unacked, index])
        if restored:
            log.warning("handed back %d messages of kombu's shared unacked hash", restored)
        return restored

    def _hand_back_orphans(self) -> int:
        """This process's records older than ORPHAN_AFTER_S that it no longer holds. The index
        is read first, what is held after: a message taken in between is too young to be in
        the read, one acked in between is gone from the hash (takeover.lua finds nothing)."""
        if self._held is None:
            return 0
        index, unacked = self._keys.pod_unacked_index(self._me), self._keys.pod_unacked(self._me)
        tags: list[Any] = self._redis.zrangebyscore(
            index, "-inf", time.time() - ORPHAN_AFTER_S, start=0, num=self._legacy_batch
        )
        if not tags:
            return 0
        held = set(self._held())
        orphans = [tag for tag in tags if as_text(tag) not in held]
        if not orphans:
            return 0
        values: list[Any] = self._redis.hmget(unacked, orphans)
        entries = {tag: entry for tag, entry in zip(orphans, values, strict=True) if entry}
        leftovers = [tag for tag, entry in zip(orphans, values, strict=True) if not entry]
        if leftovers:  # an index entry whose record is gone (kombu's restore drops them too)
            self._redis.zrem(index, *leftovers)
        restored = self._hand_back(SELF, entries, keys=[self._keys.pods(), unacked, index])
        if restored:
            log.warning(
                "handed back %d messages this process no longer held (an ack or a restore lost "
                "with a Redis connection)",
                restored,
            )
        return restored

    def _hand_back(
        self, pod: str, entries: Mapping[Any, Any], keys: list[str] | None = None
    ) -> int:
        keys = keys or [
            self._keys.pods(),
            self._keys.pod_unacked(pod),
            self._keys.pod_unacked_index(pod),
        ]
        with self._redis.pipeline(transaction=False) as pipe:
            for tag, entry in entries.items():
                try:
                    routing_key, message = redelivered(entry)
                except (ValueError, TypeError, AttributeError):
                    log.error("unreadable unacked entry %r of pod %s left in place", tag, pod)
                    continue
                queue = routing_key if routing_key in self._queues else self._queues[0]
                args: list[str | int] = [as_text(tag), message, pod, self._ttl_ms]
                self._restore(keys=[*keys, queue], args=args, client=pipe)
            return sum(int(done) for done in pipe.execute())

    def _forget(self, pod: str) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._keys.pods(), pod)
            pipe.delete(self._keys.pod_unacked_index(pod), self._keys.pod_unacked_mutex(pod))
            pipe.execute()
