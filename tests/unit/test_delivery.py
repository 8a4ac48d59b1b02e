"""The delivery being run (worker/delivery.py): its tag is what fences claims, and a second
copy of a running delivery in the same process does not run."""

from __future__ import annotations

import threading
import time

import pytest

from cancelq.worker.delivery import current_tag, running

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
