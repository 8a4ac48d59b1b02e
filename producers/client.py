"""The Python producer API for strategy engines.

::

    producer = CancelProducer.from_url("redis://127.0.0.1:6379/0")
    rid = producer.enqueue(account="main", category="spot", symbol="BTCUSDT", orderLinkId="x1")
    outcome = producer.wait(rid, timeout_s=5)

Invalid input is refused here (:class:`~cancelq.errors.ContractError` names each field and its
rule) and never reaches the queue. ``enqueue_many`` validates everything first, then pushes all
messages in one pipelined round trip.

An enqueue that returns is on the Redis master. With ``min_replicas=N`` it returns only once N
replicas hold it too (Redis ``WAIT``, up to ``replica_timeout_ms``), else it raises
:class:`~cancelq.errors.NotReplicatedError`: the cancel is still queued on the master, and
enqueueing it again with the same ``requestId`` is safe (the worker answers a repeated request
once). A Redis at its ``maxmemory`` raises :class:`~cancelq.errors.StoreFullError`: nothing was
enqueued.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis

from cancelq.confirmations import ConfirmationRecord
from cancelq.contract import KILL_QUEUE, KILL_TASK_NAME, QUEUE, parse_cancel, parse_kill
from cancelq.errors import NotReplicatedError, StoreError, StoreFullError, is_out_of_memory
from cancelq.keys import Keys
from cancelq.outcomes import Outcome, OutcomeReader
from cancelq.producers import confirmations
from cancelq.producers.message import encode_message
from cancelq.producers.transaction import Command, run_transaction
from cancelq.redis_client import SentinelOptions, connect

POLL_START_S = 0.005
POLL_MAX_S = 0.1
#: How long an enqueue with ``min_replicas`` waits for the replicas (ms).
REPLICA_TIMEOUT_MS = 1000


class CancelProducer:
    """Enqueue cancels and kills; read their outcomes. ``queue``, ``kill_queue`` and
    ``key_prefix`` must be the workers' (``CANCELQ_QUEUE``, ``CANCELQ_KILL_QUEUE``,
    ``CANCELQ_KEY_PREFIX``). ``min_replicas`` > 0: an enqueue returns once that many replicas
    hold it (``CANCELQ_ENQUEUE_MIN_REPLICAS``), waiting up to ``replica_timeout_ms``."""

    def __init__(
        self,
        client: redis.Redis,
        queue: str = QUEUE,
        key_prefix: str = "cancelq",
        kill_queue: str = KILL_QUEUE,
        *,
        min_replicas: int = 0,
        replica_timeout_ms: int = REPLICA_TIMEOUT_MS,
    ) -> None:
        if min_replicas < 0 or replica_timeout_ms <= 0:
            raise ValueError("min_replicas must be >= 0 and replica_timeout_ms > 0")
        self._min_replicas = min_replicas
        self._replica_timeout_ms = replica_timeout_ms
        self._redis = client
        self._queue = queue
        self._kill_queue = kill_queue
        self._outcomes = OutcomeReader(client, Keys(prefix=key_prefix, queue=queue))

    @classmethod
    def from_url(
        cls,
        url: str,
        queue: str = QUEUE,
        key_prefix: str = "cancelq",
        kill_queue: str = KILL_QUEUE,
        *,
        min_replicas: int = 0,
        replica_timeout_ms: int = REPLICA_TIMEOUT_MS,
        sentinel: SentinelOptions | None = None,
    ) -> CancelProducer:
        """``url``: ``redis://``, ``rediss://`` or ``sentinel://`` (then ``sentinel`` names the
        master, ``SentinelOptions("mymaster")``; ``cancelq/redis_client.py``)."""
        client = connect(url, sentinel, socket_timeout=5, socket_connect_timeout=5)
        return cls(
            client,
            queue=queue,
            key_prefix=key_prefix,
            kill_queue=kill_queue,
            min_replicas=min_replicas,
            replica_timeout_ms=replica_timeout_ms,
        )

    def enqueue(self, **fields: Any) -> str:
        """Validate and enqueue one cancel; returns its ``requestId``."""
        return self.enqueue_many([fields])[0]

    def enqueue_many(self, requests: Iterable[Mapping[str, Any]]) -> list[str]:
        """Validate all, then enqueue all in one round trip; returns their ``requestId``s."""
        prepared = [prepare(fields) for fields in requests]
        if not prepared:
            return []
        messages = {
            fields["requestId"]: encode_message(fields, fields["requestId"], self._queue)
            for fields in prepared
        }
        self._push(self._queue, messages)
        return [fields["requestId"] for fields in prepared]

    def _push(self, queue: str, messages: Mapping[str, str]) -> None:
        """Push the messages and their outbox entries in one transaction: a message the broker
        loses (a Redis restart at the wrong instant) is pushed again by the workers."""
        keys = self._outcomes.keys
        now = int(time.time() * 1000)
        commands: list[Command] = [("LPUSH", queue, message) for message in messages.values()]
        commands.append(("ZADD", keys.outbox(), *[x for rid in messages for x in (now, rid)]))
        commands.append(("HSET", keys.outbox_messages(), *_flat(messages)))
        try:
            acked = run_transaction(
                self._redis,
                commands,
                replicas=self._min_replicas,
                timeout_ms=self._replica_timeout_ms,
            )
        except redis.exceptions.ResponseError as exc:
            if not is_out_of_memory(exc):
                raise StoreError(f"enqueue failed: {exc}") from exc
            raise StoreFullError(
                f"enqueue refused: Redis is out of memory (used memory over maxmemory): none of "
                f"these {len(messages)} cancels was enqueued; enqueue them again once Redis has "
                f"room"
            ) from exc
        except redis.RedisError as exc:
            raise StoreError(f"enqueue failed: {exc}") from exc
        if acked is not None:
            self._check_replicas(acked, list(messages))

    def _check_replicas(self, acked: int, request_ids: list[str]) -> None:
        if acked >= self._min_replicas:
            return
        raise NotReplicatedError(
            f"enqueued on the Redis master, but only {acked} of {self._min_replicas} replicas "
            f"held it within {self._replica_timeout_ms} ms: it may not survive a failover. It "
            f"stays queued; enqueue it again with the same requestId to be sure (the worker "
            f"answers a repeated requestId once)",
            acked=acked,
            wanted=self._min_replicas,
            timeout_ms=self._replica_timeout_ms,
            request_ids=request_ids,
        )

    def kill(
        self,
        account: str,
        category: str | None = None,
        *,
        symbol: str | None = None,
        base_coin: str | None = None,
        settle_coin: str | None = None,
        request_id: str | None = None,
    ) -> str:
        """Kill switch: cancel every open order of ``account`` (optionally one category, and one
        symbol or coin) ahead of every queued cancel; returns the kill's ``requestId``."""
        fields: dict[str, Any] = {
            "account": account,
            "category": category,
            "symbol": symbol,
            "baseCoin": base_coin,
            "settleCoin": settle_coin,
            "requestId": request_id or uuid.uuid4().hex,
            "enqueuedAt": int(time.time() * 1000),
        }
        fields = {k: v for k, v in fields.items() if v is not None}
        parse_kill(fields)
        message = encode_message(fields, fields["requestId"], self._kill_queue, KILL_TASK_NAME)
        self._push(self._kill_queue, {fields["requestId"]: message})
        return str(fields["requestId"])

    def outcome(self, request_id: str) -> Outcome | None:
        """The final outcome, or None while the request is pending."""
        return self._outcomes.get(request_id)

    def outcomes(self, request_ids: Sequence[str]) -> dict[str, Outcome]:
        return self._outcomes.get_many(request_ids)

    def wait(self, request_id: str, timeout_s: float) -> Outcome:
        """Block until the request has its final outcome; TimeoutError after ``timeout_s``."""
        return self.wait_many([request_id], timeout_s)[request_id]

    def wait_many(self, request_ids: Sequence[str], timeout_s: float) -> dict[str, Outcome]:
        """Block until every request has its outcome; TimeoutError names how many are missing."""
        deadline = time.monotonic() + timeout_s
        pending = list(dict.fromkeys(request_ids))
        done: dict[str, Outcome] = {}
        pause = POLL_START_S
        while pending:
            done.update(self._outcomes.get_many(pending))
            pending = [rid for rid in pending if rid not in done]
            if not pending:
                break
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(pending)} of {len(request_ids)} requests have no outcome")
            time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
            pause = min(pause * 2, POLL_MAX_S)
        return done

    def confirmation(self, request_id: str) -> ConfirmationRecord | None:
        """The confirmation (confirmed_cancelled / filled_first / unconfirmed), or None yet."""
        return confirmations.get_confirmation(self._redis, self._outcomes.keys, request_id)

    def wait_confirmation(self, request_id: str, timeout_s: float) -> ConfirmationRecord:
        """Block until the request is confirmed; TimeoutError after ``timeout_s``."""
        return self.wait_confirmations([request_id], timeout_s)[request_id]

    def wait_confirmations(
        self, request_ids: Sequence[str], timeout_s: float
    ) -> dict[str, ConfirmationRecord]:
        return confirmations.wait_confirmations(
            self._redis, self._outcomes.keys, request_ids, timeout_s
        )


def prepare(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Fill ``requestId`` and ``enqueuedAt`` when absent, then validate (ContractError)."""
    filled = dict(fields)
    filled.setdefault("requestId", uuid.uuid4().hex)
    filled.setdefault("enqueuedAt", int(time.time() * 1000))
    parse_cancel(filled)
    return filled


def _flat(mapping: Mapping[str, Any]) -> list[Any]:
    """``{k: v}`` as ``[k, v, ...]`` (a command's arguments)."""
    return [item for pair in mapping.items() for item in pair]
