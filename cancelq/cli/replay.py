"""Replaying dead letters: each kept body read through the contract again, as the worker reads it.

A record is one of three things (:class:`Verdict`):

* ``replayable``: its body holds a cancel the contract accepts now. Replay enqueues that
  cancel with :class:`~cancelq.producers.client.CancelProducer` (the outbox is written as for
  any producer) under a **new** ``requestId``: the original id already has its final
  ``rejected`` outcome (outcomes are written once), so the summary names both. Only the
  contract's fields are sent, with a fresh ``enqueuedAt``. Then the record is removed from the
  stream (``XDEL``): the summary and the new request's outcome are its trace. Two operators
  replaying the same record at once enqueue the same cancel identity twice, which the worker's
  dedup answers once.
* ``invalid``: the body is a cancel the contract still refuses; ``rules`` names each broken
  rule. The record stays.
* ``not_replayable``: no JSON body was kept (pickle, garbage, too large, a configured secret),
  or it is not a cancel (another task, a kill). The record stays.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cancelq.contract import CancelRequest, read_cancel
from cancelq.errors import ContractError
from cancelq.producers.client import CancelProducer
from cancelq.worker.dead_letter_bodies import masked, read_call
from cancelq.worker.dead_letter_log import DeadLetter, DeadLetterLog

Kind = Literal["replayable", "invalid", "not_replayable"]
#: What a replay sends of a cancel: its identifying fields (a new id and time are given).
FRESH = frozenset({"requestId", "enqueuedAt"})


@dataclass(frozen=True)
class Verdict:
    """What replaying one record would do."""

    letter: DeadLetter
    kind: Kind
    cancel: Mapping[str, Any] = field(default_factory=dict)  # replayable: the fields sent
    was: str = ""  # the request id the message named (its rejected outcome is under it)
    rules: Sequence[str] = ()  # invalid: every broken rule
    seen: Mapping[str, str] = field(default_factory=dict)  # invalid: the fields, safe to show
    why: str = ""  # not_replayable: why


def judge(letter: DeadLetter) -> Verdict:
    """Read a record's kept body through the contract, as the worker would now."""
    if not letter.body:
        return Verdict(letter, "not_replayable", why=letter.unreplayable or "no body kept")
    call = read_call(letter.task, letter.body)
    if call.fields is None:
        return Verdict(letter, "not_replayable", why=call.problem)
    was = letter.request_id or _named_id(call.fields)
    try:
        request, _ = read_cancel(call.fields)
    except ContractError as exc:
        return Verdict(letter, "invalid", was=was, rules=exc.problems, seen=shown(call.fields))
    sent = request.model_dump(exclude_none=True, exclude=set(FRESH))
    return Verdict(letter, "replayable", cancel=sent, was=was or request.requestId or "")


#: Longest rendering of one field's value that ``show`` prints.
SHOWN_CHARS = 64


def shown(fields: Mapping[str, Any]) -> dict[str, str]:
    """The fields of a refused cancel, safe to print: the contract's fields as masked JSON (cut
    to :data:`SHOWN_CHARS`), any other field by name only (credential-named ones were never
    kept)."""
    known = CancelRequest.model_fields
    return {
        masked(str(name))[:SHOWN_CHARS]: (
            masked(json.dumps(value))[:SHOWN_CHARS] if name in known else "(not read)"
        )
        for name, value in fields.items()
    }


def _named_id(fields: Mapping[str, Any]) -> str:
    rid = fields.get("requestId")
    return str(rid) if isinstance(rid, str | int) and not isinstance(rid, bool) else ""


@dataclass(frozen=True)
class Replayed:
    """A replayed record: the new request id its cancel was enqueued under."""

    verdict: Verdict
    request_id: str


def replay(
    verdicts: Sequence[Verdict], producer: CancelProducer, log: DeadLetterLog
) -> list[Replayed]:
    """Enqueue every replayable verdict's cancel in one round trip, then remove its record."""
    chosen = [v for v in verdicts if v.kind == "replayable"]
    if not chosen:
        return []
    ids = producer.enqueue_many([dict(v.cancel) for v in chosen])
    log.remove([v.letter.id for v in chosen])
    return [Replayed(v, rid) for v, rid in zip(chosen, ids, strict=True)]
