"""The delivery being run: which message of the broker this task execution holds.

The task shell (``worker/host/tasks.py``) sets it from the message's delivery tag before the
pipeline runs; every dedup claim of that execution sends it (``claim.lua``), so that the claim
and the send's budget are refused atomically once another worker process has taken the message
over (fencing: this process was frozen or cut off from Redis, and its unacked record of the
message was handed back). Empty outside a task: no fencing.

Two copies of one message can reach the same process (the outbox sweep pushes a message again
when it sees it nowhere, which can happen in the instant between kombu's pop and its unacked
record): a delivery tag already running in this process is not run a second time. The copy
waits until the first run ends (at most ``DUPLICATE_WAIT_S``) before its task returns: the two
copies share one unacked record, which the copy's acknowledgement would otherwise delete while
the first still runs (and a crash then would lose what it held).

A delivery that carries one request (``cancelq.cancel_order``) ends with that request's final
outcome: the script that records it also deletes the delivery's unacked record
(``finish.lua``), and marks it here, so the acknowledgement that follows the task skips its own
two deletes, a round trip of every cancel (``worker/host/kombu_channel.py``). A mark is only
ever set after the record is gone; a missing mark costs that round trip, nothing else. Only a
delivery this process's own broker channel holds ends so (the threads and solo pools): under
prefork the channel, and the acknowledgement, are the parent's, which would delete again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from threading import Condition, Lock
from typing import Final

#: How long a second copy of a running delivery waits for the first run to end.
DUPLICATE_WAIT_S: Final = 30.0

_current: ContextVar[str] = ContextVar("cancelq_delivery_tag", default="")
_carried: ContextVar[str] = ContextVar("cancelq_delivery_request", default="")
_running: set[str] = set()
_ended = Condition()


def _nothing_held(_tag: str) -> bool:
    return False


#: Does this process's broker channel hold the delivery of this tag? Set by the channel
#: (``worker/host/kombu_channel.py``); without one, no delivery is held here.
_held_here: list[Callable[[str], bool]] = [_nothing_held]
#: Delivery tags whose unacked record a finish deleted, not yet acknowledged here.
_record_deleted: set[str] = set()
_marks = Lock()


def current_tag() -> str:
    """The delivery tag of the message this execution runs ("" outside a task)."""
    return _current.get()


def held_here_by(check: Callable[[str], bool]) -> None:
    """Install the broker channel's answer to "is this delivery held in this process?"."""
    _held_here[0] = check


def ending_with(request_id: str) -> str:
    """The tag of the delivery this execution runs when that delivery carries only
    ``request_id`` (its outcome ends the delivery) and this process holds it, else ""."""
    tag = _current.get()
    if tag and request_id and _carried.get() == request_id and _held_here[0](tag):
        return tag
    return ""


def mark_record_deleted(tag: str) -> None:
    """The unacked record of delivery ``tag`` is deleted (its outcome's script did it)."""
    with _marks:
        _record_deleted.add(tag)


def take_record_deleted(tag: str) -> bool:
    """Was the unacked record of ``tag`` already deleted? Forgets the mark (one ack a mark)."""
    with _marks:
        if tag in _record_deleted:
            _record_deleted.discard(tag)
            return True
        return False


@contextmanager
def running(tag: str, carries: str = "") -> Iterator[bool]:
    """Run the block as the execution of the delivery ``tag`` (``carries``: the one request
    it carries, when it carries one); yields False (run nothing) when this process already
    runs that delivery."""
    with _ended:
        duplicate = bool(tag) and tag in _running
        if tag and not duplicate:
            _running.add(tag)
    if duplicate:
        with _ended:
            _ended.wait_for(lambda: tag not in _running, timeout=DUPLICATE_WAIT_S)
        yield False
        return
    token, carried = _current.set(tag), _carried.set(carries)
    try:
        yield True
    finally:
        _carried.reset(carried)
        _current.reset(token)
        with _ended:
            _running.discard(tag)
            _ended.notify_all()
