"""Redis round trips of one cancel, named one by one, from ``MONITOR``.

``MONITOR`` shows every command a client sent (and, marked ``lua``, every call a script made)
with its time and the client's address. A round trip is a run of commands from one client
that Redis ran back to back (a pipeline, a MULTI/EXEC, or a single command): consecutive in
the stream, same address, under :data:`PIPELINE_GAP_S` apart. Scripts are named by the SHA1 of
their source, as redis-py registers them (the intake script by its composed source).

Used by ``bench.scenarios.redis_cost``: one cancel traced on an idle lane (the fast path) and
one on a lane whose budget is spent (the parked path), with nothing else in flight; the pod's
heartbeat and takeover sweep are left out (a cost per second, not per cancel: the idle
figure counts them).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis

from cancelq.worker.intake import compose

#: Commands of one pipeline arrive in one read and Redis runs them back to back; the next
#: round trip of the same client waits for a reply and for Python (~100 µs or more here).
PIPELINE_GAP_S = 50e-6
#: Not the cancel's: the pod's own beat and sweep (a cost per second, in the idle figure), the
#: MONITOR client's own connection and the observer's outbox sweep.
NOT_THE_CANCELS = ("HELLO", "rescue")
#: The pod's observer, every 5 s (queue-depth gauges, halted accounts; ``rescue`` above is its
#: outbox sweep): plain reads no step of a cancel sends.
OBSERVER = frozenset({"ZRANGE", "ZCARD", "HKEYS"})
POD_REGISTRY_SUFFIX = ":pods"
#: Sent alone by a worker only to read the Redis clock for its beat (``worker/redis_clock.py``):
#: no step of a cancel sends a bare TIME (the scripts read it inside, as inner calls).
BEAT_CLOCK = frozenset({"TIME"})
#: A blocking read is a round trip of its own (kombu sends it alone and waits).
BLOCKING = frozenset({"BRPOP", "BLPOP"})
HARNESS = frozenset({"LLEN", "HLEN", "ZREVRANGE", "ZRANDMEMBER", "MGET", "PING", "INFO"})

_SCRIPT_PACKAGES = ("cancelq.worker", "cancelq.worker.ratelimit")


def script_names() -> dict[str, str]:
    """SHA1 -> script name, for every script the worker registers."""
    names = {hashlib.sha1(compose().encode()).hexdigest(): "intake"}  # noqa: S324 (Redis's id)
    for package in _SCRIPT_PACKAGES:
        for entry in resources.files(package).iterdir():
            if entry.name.endswith(".lua"):
                text = entry.read_text(encoding="utf-8")
                sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324
                names[sha] = entry.name.removesuffix(".lua")
    return names


@dataclass
class RoundTrip:
    client: str
    commands: list[str] = field(default_factory=list)
    inner: int = 0  # calls scripts made

    def name(self) -> str:
        return " ".join(self.commands)


@dataclass
class Monitor:
    """Records ``MONITOR`` in a thread between :meth:`start` and :meth:`stop`."""

    client: redis.Redis
    entries: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Monitor:
        ready = threading.Event()

        def listen() -> None:
            with self.client.monitor() as feed:  # type: ignore[no-untyped-call]
                ready.set()
                for entry in feed.listen():
                    self.entries.append(entry)
                    if self._stop.is_set():
                        return

        self._thread = threading.Thread(target=listen, daemon=True)
        self._thread.start()
        ready.wait(5)
        time.sleep(0.1)
        return self

    def mark(self) -> int:
        return len(self.entries)

    def stop(self) -> None:
        self._stop.set()
        self.client.ping()  # one more entry: the listener sees the stop
        if self._thread is not None:
            self._thread.join(5)


def not_a_cancels(words: list[str]) -> bool:
    """Is this command (MONITOR's words) one no step of a cancel sends?"""
    label = words[0]
    if label in HARNESS or label in OBSERVER or label == "SCRIPT":  # SCRIPT: after a flush
        return True
    if label in ("ZADD", "ZRANGEBYSCORE") and words[1].endswith(POD_REGISTRY_SUFFIX):
        return True  # the pod's beat and the takeover sweep's read of the pod registry
    return label in BEAT_CLOCK  # the beat's Redis clock reading (worker/redis_clock.py)


def round_trips(entries: list[dict[str, Any]], scripts: dict[str, str]) -> Iterator[RoundTrip]:
    """Group ``entries`` (MONITOR, in order) into round trips, scripts named, inner calls
    counted on the round trip of the script that made them. A MULTI ... EXEC is one round trip
    (redis-py sends it in one write); the harness's polling is dropped first."""
    current: RoundTrip | None = None
    last_t, in_multi = 0.0, False
    for entry in entries:
        if entry.get("client_type") == "lua":
            if current is not None:
                current.inner += 1
                last_t = float(entry["time"])  # the gap counts from the script's last call
            continue
        words = str(entry["command"]).split(" ")
        label = words[0]
        if not_a_cancels(words):
            continue
        if label in ("EVALSHA", "EVAL") and len(words) > 1:
            label = scripts.get(words[1], "script")
        t, client = float(entry["time"]), str(entry.get("client_address", ""))
        same = (
            current is not None
            and client == current.client
            and BLOCKING.isdisjoint((label, current.commands[-1]))
        )
        if same and current is not None and (in_multi or t - last_t < PIPELINE_GAP_S):
            current.commands.append(label)
        else:
            if current is not None:
                yield current
            current = RoundTrip(client, [label])
        in_multi = (in_multi or label == "MULTI") and label != "EXEC"
        last_t = t
    if current is not None:
        yield current


def cancel_round_trips(entries: list[dict[str, Any]], *, parked: bool) -> list[RoundTrip]:
    """The round trips of the traced cancel: the pod's own beats and sweeps and the
    harness's polling left out; on the fast path, a dispatcher's idle look too."""
    skip = (*NOT_THE_CANCELS, *(() if parked else ("dispatch",)))
    return [
        trip for trip in round_trips(entries, script_names()) if not trip.name().startswith(skip)
    ]


def describe(trips: list[RoundTrip]) -> str:
    """``1 BRPOP · 2 MULTI ZADD HSET EXEC · 3 intake(18) ...``: scripts with their inner
    calls in brackets."""
    parts = []
    for i, trip in enumerate(trips, 1):
        plural = "" if trip.inner == 1 else "s"
        inner = f" ({trip.inner} call{plural} inside)" if trip.inner else ""
        parts.append(f"{i} {trip.name()}{inner}")
    return "; ".join(parts)
