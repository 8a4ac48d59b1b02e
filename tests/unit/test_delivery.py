"""The delivery being run (worker/delivery.py): its tag is what fences claims, and a second
copy of a running delivery in the same process does not run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from cancelq.worker.delivery import (
    current_tag,
    ending_with,
    held_here_by,
    mark_record_deleted,
    running,
    take_record_deleted,
)

pytestmark = pytest.mark.timeout(10)


def test_the_tag_is_set_for_the_run_only() -> None:
    assert current_tag() == ""
    with running("t1") as first:
        assert first
        assert current_tag() == "t1"
    assert current_tag() == ""


def test_a_second_copy_waits_for_the_first_and_does_not_run() -> None:
    events: list[str] = []
    entered = threading.Event()

    def first() -> None:
        with running("same") as go:
            assert go
            entered.set()
            time.sleep(0.3)
            events.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(5)
    with running("same") as go:
        events.append("copy returns")
        assert not go
    thread.join()
    assert events == ["first done", "copy returns"]


def test_different_deliveries_and_untagged_runs_do_not_wait() -> None:
    with running("a") as a, running("b") as b, running("") as untagged, running("") as again:
        assert (a, b, untagged, again) == (True, True, True, True)


@pytest.fixture
def held_here() -> Iterator[set[str]]:
    """The tags this process's broker channel holds (as worker/host/kombu_channel.py says)."""
    held: set[str] = set()
    held_here_by(held.__contains__)
    yield held
    held_here_by(lambda _tag: False)


def test_only_the_request_a_delivery_carries_ends_it(held_here: set[str]) -> None:
    held_here.update({"t1", "t2"})
    assert ending_with("r1") == ""  # outside a task
    with running("t1", "r1"):
        assert ending_with("r1") == "t1"
        assert ending_with("r2") == ""  # another request's outcome (a kill covers it)
        assert ending_with("") == ""
    with running("t2"):  # a delivery of several requests (a batch, a kill)
        assert ending_with("r1") == ""
    assert ending_with("r1") == ""


def test_a_delivery_another_process_holds_never_ends_here(held_here: set[str]) -> None:
    """Prefork: the parent's channel holds it, and its acknowledgement deletes the record."""
    with running("t3", "r3"):
        assert ending_with("r3") == ""


def test_a_deleted_record_is_skipped_by_one_acknowledgement() -> None:
    assert not take_record_deleted("t9")
    mark_record_deleted("t9")
    assert take_record_deleted("t9")
    assert not take_record_deleted("t9")  # a later copy's ack deletes its own record
