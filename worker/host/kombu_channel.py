"""kombu's Redis transport with a channel that checks every item it pops.

kombu parses each item it pops off the list; a non-JSON item (garbage pushed with plain Redis
commands) or a JSON document that is not a message envelope raises inside the event loop and
ends the worker ("Unrecoverable error"), the item already gone. Here such an item is a dead
letter instead (``worker/dead_letters.py``), and the worker keeps consuming.

A Redis at its ``maxmemory`` (``noeviction``) refuses every command queued in a ``MULTI``, even
deletes, and every write that may grow memory (``OOM``). kombu records a popped message as
unacked, and acks it, in a ``MULTI``: both raised in the event loop and ended the worker, the
popped message only in its memory. Here a popped message whose record is refused is pushed back
where it was popped from, waiting until Redis takes it (the consumer pops nothing more
meanwhile: back pressure); an ack deletes without ``MULTI`` (ZREM and HDEL alone are allowed at
maxmemory); an ack or a requeue Redis refuses leaves the message in the unacked hash and
forgets it in memory: the process hands such records back itself (``worker/takeover.py``),
within seconds instead of after the visibility timeout.

The same checks run on kombu's Sentinel channel (``sentinel://``), which also survives a
failover that stock kombu does not: a master demoted to a replica (Sentinel's ``REPLICAOF``
when the old master comes back) ends every ``BRPOP`` blocked on it with ``UNBLOCKED ...``, a
``ResponseError`` that kombu does not take for a lost connection, so the worker stopped
("Unrecoverable error"); here that connection is dropped like a lost one, and the next
``BRPOP`` asks the Sentinels for the new master.

``worker/host/app.py`` names :class:`Transport` or :class:`SentinelTransport` in the Celery
config (``broker_transport``). This overrides a kombu internal (``_brpop_read``): the kombu
version is pinned in ``pyproject.toml``.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable
from queue import Empty
from typing import Any

import redis
from kombu import transport as kombu_transports
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual as kombu_virtual
from kombu.utils.json import dumps, loads

from cancelq.errors import is_out_of_memory
from cancelq.sentinel_connections import FollowingConnection, FollowingSSLConnection
from cancelq.worker.dead_letters import Reason
from cancelq.worker.delivery import held_here_by, take_record_deleted
from cancelq.worker.envelopes import (
    PREVIEW_BYTES,
    as_text,
    envelope_problem,
    header_id,
    oversized,
)
from cancelq.worker.host.dead_letter_hook import record

log = logging.getLogger(__name__)
HAND_BACK_FIRST_S = 0.05
HAND_BACK_MAX_S = 1.0
HAND_BACK_LOG_EVERY_S = 10.0


#: Every live QoS of this process (one per channel; a reconnect makes a new one).
_LIVE_QOS: weakref.WeakSet[QoS] = weakref.WeakSet()


def held_delivery_tags() -> frozenset[str]:
    """The delivery tags this process holds now: taken, neither acked nor handed back, over
    every live channel (kombu 5.7: ``_delivered`` less ``_dirty``, its acked tags not yet
    flushed). Read from another thread than the event loop: the copies are retried if a
    mutation interrupts one."""
    while True:
        try:
            return frozenset(
                tag for qos in list(_LIVE_QOS) for tag in set(qos._delivered) - set(qos._dirty)
            )
        except RuntimeError:  # changed size during iteration
            continue


held_here_by(lambda tag: tag in held_delivery_tags())


class _AlreadyDeleted:
    """Stands for kombu's pipeline of deletes when there is nothing left to delete."""

    def execute(self) -> list[int]:
        return []


class QoS(kombu_redis.QoS):
    """kombu's unacked bookkeeping, usable while Redis is at its maxmemory, in plain pipelines
    (two commands fewer a message than kombu's MULTI/EXEC), known to
    :func:`held_delivery_tags`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        _LIVE_QOS.add(self)

    def append(self, message: Any, delivery_tag: str) -> None:
        """kombu's (5.7) record of a delivered message, the same two writes in a plain
        pipeline. The index entry goes first, as in kombu: were Redis to stop between the two,
        an index entry without its message is what kombu's restore drops; the takeover and the
        claims' fencing read the hash, written before the task runs (execute waits for it)."""
        delivery = message.delivery_info
        record = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])  # type: ignore[no-untyped-call]
        with self.channel.conn_or_acquire() as client:
            (
                client.pipeline(transaction=False)
                .zadd(self.unacked_index_key, {delivery_tag: time.time()})
                .hset(self.unacked_key, delivery_tag, record)
                .execute()
            )
        kombu_virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        """kombu's (5.7) deletes of an acked message, in a plain pipeline when kombu does not
        pass its own (its restore transaction does). The hash entry goes first: were Redis to
        stop between the two, an index entry without its message is what kombu's restore
        already drops. Nothing is sent for a record the request's outcome already deleted
        (``worker/delivery.py``: one round trip a cancel fewer)."""
        if pipe is not None:
            return super()._remove_from_indices(delivery_tag, pipe)  # type: ignore[no-untyped-call]
        if take_record_deleted(delivery_tag):
            return _AlreadyDeleted()
        with self.channel.conn_or_acquire() as client:
            return (
                client.pipeline(transaction=False)
                .hdel(self.unacked_key, delivery_tag)
                .zrem(self.unacked_index_key, delivery_tag)
            )

    def ack(self, delivery_tag: str) -> None:
        """kombu's ack; when Redis refuses the delete (a lost connection), the message is
        forgotten here all the same, as a successful ack would. kombu would keep it in memory
        as held until the channel closes; its record left in Redis is then an orphan that this
        process hands back at its next full sweep (``worker/takeover.py``), answered from its
        outcome. Celery still logs the failure ("Couldn't ack")."""
        try:
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]
        except redis.RedisError:
            kombu_virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]
            raise

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """kombu's reject; when Redis refuses it (out of memory, a lost connection), the
        message is forgotten here as kombu's reject does, its record left for the next full
        sweep to hand back (an OOM is logged, not raised: Redis refuses it while full)."""
        try:
            super().reject(delivery_tag, requeue=requeue)  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            kombu_virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]
            if not is_out_of_memory(exc):
                raise
            log.error(
                "Redis out of memory: a message to requeue stays in the unacked hash; this "
                "process hands it back once Redis takes writes again"
            )


#: What Redis answers a client blocked in BRPOP when the server turns into a replica.
UNBLOCKED = "UNBLOCKED"


class CheckedPops(kombu_redis.Channel):
    """The override, on top of any kombu Redis channel: each popped item is checked, a
    demoted master's ``UNBLOCKED`` or ``READONLY`` is a lost connection."""

    QoS = QoS

    def _readable(self, item: bytes | str) -> dict[str, Any] | None:
        """The envelope of a popped item, or None after recording it as a dead letter."""
        if oversized(item):
            record(Reason.TOO_LARGE, item[:PREVIEW_BYTES], detail=f"{len(item)} bytes")
            return None
        try:
            payload = loads(as_text(item))  # type: ignore[no-untyped-call]
        except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: "[[[[..."
            record(Reason.NOT_JSON, item, detail=type(exc).__name__)
            return None
        problem = envelope_problem(payload)
        if problem is None:
            try:
                # the body must decode (base64 ...)
                self.Message(payload, channel=self)  # type: ignore[no-untyped-call]
            except Exception as exc:
                problem = f"body: {type(exc).__name__}"
        if problem is not None:
            content_type = payload.get("content-type") if isinstance(payload, dict) else None
            record(
                Reason.BAD_ENVELOPE,
                item,
                content_type=content_type if isinstance(content_type, str) else None,
                request_id=header_id(payload),
                detail=problem,
            )
            return None
        result: dict[str, Any] = payload
        return result

    def _brpop_read(self, **options: Any) -> bool:
        """kombu's ``_brpop_read`` (5.7), with the popped item checked before delivery."""
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            except redis.ResponseError as exc:
                if not _demoted(exc):
                    raise
                self.client.connection.disconnect()
                raise redis.ConnectionError("the master was demoted to a replica") from None
            if not dest__item:
                raise Empty()
            popped_from, item = dest__item
            dest = as_text(popped_from).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            payload = self._readable(item)
            if payload is not None:
                self._deliver_or_hand_back(payload, dest, as_text(popped_from), item)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            flush: Callable[[], None] | None = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()

    def _deliver_or_hand_back(
        self, payload: dict[str, Any], dest: str, popped_from: str, item: bytes | str
    ) -> None:
        """Deliver; if Redis refuses the unacked record for want of memory (nothing of it is
        written: it is one transaction), push the item back to the end it was popped from."""
        try:
            self.connection._deliver(payload, dest)
        except redis.exceptions.ResponseError as exc:
            if not is_out_of_memory(exc):  # OOM, or EXECABORT: memory ran out before EXEC
                raise
            self._hand_back(popped_from, item)

    def _hand_back(self, queue: str, item: bytes | str) -> None:
        """``RPUSH`` until Redis takes it (BRPOP pops that end: it comes next again)."""
        pause, since, logged = HAND_BACK_FIRST_S, time.monotonic(), 0.0
        while True:
            try:
                with self.conn_or_acquire() as client:
                    client.rpush(queue, item)
                log.warning("Redis out of memory: a popped message went back to %s", queue)
                return
            except redis.RedisError as exc:
                waited = time.monotonic() - since
                if waited >= logged:
                    log.error(
                        "Redis refuses writes (%s): holding a popped message of %s for %.0f s, "
                        "consuming nothing until it is back in its queue",
                        type(exc).__name__,
                        queue,
                        waited,
                    )
                    logged = waited + HAND_BACK_LOG_EVERY_S
            time.sleep(pause)
            pause = min(pause * 2, HAND_BACK_MAX_S)


def _demoted(exc: redis.ResponseError) -> bool:
    """A blocked BRPOP's ``UNBLOCKED``, or ``READONLY`` for one sent after the demotion (over
    Sentinel, redis-py already turns the latter into a ConnectionError)."""
    return isinstance(exc, redis.ReadOnlyError) or str(exc).startswith(UNBLOCKED)


class Channel(CheckedPops, kombu_redis.Channel):
    """kombu's Redis channel (``redis://``, ``rediss://``) with the checked pops."""


class SentinelChannel(CheckedPops, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel (``sentinel://``) with the checked pops, whose connections
    reconnect to the master the Sentinels name even inside a command
    (``cancelq/sentinel_connections.py``: kombu's unacked record of a popped message, on the
    event loop, retried against a frozen old master for as long as it stayed frozen)."""

    connection_class = FollowingConnection
    # kombu's own SentinelManagedSSLConnection has the same bases (redis-py's) and no body
    connection_class_ssl = FollowingSSLConnection  # type: ignore[assignment]


class Transport(kombu_redis.Transport):
    """kombu's Redis transport (``redis://`` and ``rediss://``) with the checking channel."""

    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport (``sentinel://``) with the checking channel."""

    Channel = SentinelChannel


SENTINEL_TRANSPORT = f"{__name__}:SentinelTransport"


def claim_sentinel_scheme() -> None:
    """Make ``sentinel://`` name :class:`SentinelTransport` in this process. kombu reads each
    ``;``-part of the broker URL as a Sentinel *and* as a failover URL: on a lost connection it
    switches to the next part, and a switch takes the transport from the URL's scheme, which
    named kombu's own Sentinel transport (this channel's checks gone after the first
    failover; the fault tier then saw the consumer stall)."""
    kombu_transports.TRANSPORT_ALIASES["sentinel"] = SENTINEL_TRANSPORT
