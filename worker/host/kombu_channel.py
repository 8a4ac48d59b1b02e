"""kombu's Redis transport with a channel that checks every item it pops.

kombu parses each item it pops off the list; a non-JSON item (garbage pushed with plain Redis
commands) or a JSON document that is not a message envelope raises inside the event loop and
ends the worker ("Unrecoverable error"), the item already gone. Here such an item is a dead
letter instead (``worker/dead_letters.py``), and the worker keeps consuming.

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

from collections.abc import Callable
from queue import Empty
from typing import Any

import redis
from kombu import transport as kombu_transports
from kombu.transport import redis as kombu_redis
from kombu.utils.json import loads

from cancelq.worker.dead_letters import Reason
from cancelq.worker.envelopes import (
    PREVIEW_BYTES,
    as_text,
    envelope_problem,
    header_id,
    oversized,
)
from cancelq.worker.host.dead_letter_hook import record

#: What Redis answers a client blocked in BRPOP when the server turns into a replica.
UNBLOCKED = "UNBLOCKED"


class CheckedPops(kombu_redis.Channel):
    """The override, on top of any kombu Redis channel: each popped item is checked, a
    demoted master's ``UNBLOCKED`` or ``READONLY`` is a lost connection."""

    def _readable(self, item: bytes | str) -> dict[str, Any] | None:
        """The envelope of a popped item, or None after recording it as a dead letter."""
        if oversized(item):
            record(Reason.TOO_LARGE, item[:PREVIEW_BYTES], detail=f"{len(item)} bytes")
            return None
        try:
            payload = loads(as_text(item))  # type: ignore[no-untyped-call]
        except (ValueError, TypeError) as exc:
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
            dest, item = dest__item
            dest = as_text(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            payload = self._readable(item)
            if payload is not None:
                self.connection._deliver(payload, dest)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            flush: Callable[[], None] | None = getattr(self, "_flush_brpop_reauth", None)
            if flush is not None:
                flush()


def _demoted(exc: redis.ResponseError) -> bool:
    """A blocked BRPOP's ``UNBLOCKED``, or ``READONLY`` for one sent after the demotion (over
    Sentinel, redis-py already turns the latter into a ConnectionError)."""
    return isinstance(exc, redis.ReadOnlyError) or str(exc).startswith(UNBLOCKED)


class Channel(CheckedPops, kombu_redis.Channel):
    """kombu's Redis channel (``redis://``, ``rediss://``) with the checked pops."""


class SentinelChannel(CheckedPops, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel (``sentinel://``) with the checked pops."""


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
