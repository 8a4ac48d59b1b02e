"""Cancels sent with Celery's own ``send_task`` (JSON serializer) from a separate Python process
whose plain ``Celery`` app imports nothing of cancelq (``celery_send_task.py``), taken by the
real workers and sent to the simulator over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cancelq.outcomes import Outcome, Status
from tests.support import Stack, cancel

pytestmark = pytest.mark.integration
ENGINE = Path(__file__).with_name("celery_send_task.py")


def send_task(stack: Stack, mode: str, link_ids: list[str]) -> list[str]:
    cancels = [cancel(orderLinkId=link) for link in link_ids]
    completed = subprocess.run(
        [sys.executable, str(ENGINE), stack.redis_server.url, mode, json.dumps(cancels)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    ids: list[str] = json.loads(completed.stdout)
    assert len(ids) == len(link_ids)
    return ids


def ignored_counts(stack: Stack) -> dict[tuple[str, str], float]:
    """``cancelq_ignored_fields_total`` of the stack's worker, by (field, reason)."""
    port = stack.workers[0].env["CANCELQ_METRICS_PORT"]
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    counts = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "cancelq_ignored_fields_total":
                counts[(sample.labels["field"], sample.labels["reason"])] = sample.value
    return counts


def sent_and_outcomes(stack: Stack, mode: str, prefix: str) -> tuple[list[str], list[Outcome]]:
    """Three orders placed, their cancels sent with send_task; (order ids, outcomes)."""
    links = [f"{prefix}-{n}" for n in range(3)]
    orders = [stack.place(order_link_id=link) for link in links]
    ids = send_task(stack, mode, links)
    found = stack.producer.wait_many(ids, 15)
    return orders, [found[request_id] for request_id in ids]


def assert_cancelled_at_the_exchange(
    stack: Stack, orders: list[str], outcomes: list[Outcome]
) -> None:
    assert [o.status for o in outcomes] == [Status.CANCELLED] * 3
    assert [o.orderId for o in outcomes] == orders
    assert [stack.order_status(order_id) for order_id in orders] == ["Cancelled"] * 3


@pytest.mark.timeout(60)
def test_send_task_with_an_integer_enqueued_at_is_cancelled(stack: Stack) -> None:
    started_ms = int(time.time() * 1000)
    orders, outcomes = sent_and_outcomes(stack, "int", "send-task-int")
    assert_cancelled_at_the_exchange(stack, orders, outcomes)
    for outcome in outcomes:
        assert isinstance(outcome.enqueuedAt, int)
        assert started_ms <= outcome.enqueuedAt <= int(time.time() * 1000)


@pytest.mark.timeout(60)
def test_send_task_with_time_time_times_1000_is_cancelled(stack: Stack) -> None:
    started_ms = int(time.time() * 1000)
    orders, outcomes = sent_and_outcomes(stack, "float", "send-task-float")
    assert_cancelled_at_the_exchange(stack, orders, outcomes)
    for outcome in outcomes:  # the fraction is floored to whole milliseconds, kept for latency
        assert isinstance(outcome.enqueuedAt, int)
        assert started_ms <= outcome.enqueuedAt <= int(time.time() * 1000)


@pytest.mark.timeout(60)
def test_send_task_with_own_fields_and_a_clock_in_seconds_is_cancelled(stack: Stack) -> None:
    before = ignored_counts(stack)
    orders, outcomes = sent_and_outcomes(stack, "annotated", "send-task-annotated")
    assert_cancelled_at_the_exchange(stack, orders, outcomes)
    assert {o.enqueuedAt for o in outcomes} == {None}  # seconds: not plausible ms, dropped
    after = ignored_counts(stack)
    for labels in (("strategy", "unknown"), ("v", "unknown"), ("enqueuedAt", "implausible")):
        assert after.get(labels, 0) - before.get(labels, 0) == 3, labels


@pytest.mark.timeout(60)
def test_send_task_with_the_fields_as_one_positional_object_is_cancelled(stack: Stack) -> None:
    orders, outcomes = sent_and_outcomes(stack, "positional", "send-task-positional")
    assert_cancelled_at_the_exchange(stack, orders, outcomes)
