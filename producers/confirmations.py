"""Reading and waiting for confirmations: did an accepted cancel really cancel the order?

::

    rid = producer.enqueue(account="main", category="spot", symbol="BTCUSDT", orderId="...")
    producer.wait(rid, timeout_s=5)                          # accepted (status "cancelled")
    record = producer.wait_confirmation(rid, timeout_s=35)   # confirmed_cancelled / filled_first
                                                             # / unconfirmed (after the deadline)

Only ``cancelled`` outcomes with an ``orderId`` get a confirmation, and only while a confirmer
runs (``CANCELQ_CONFIRM_DEADLINE_S`` > 0). Waiting polls like ``wait_many`` does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from cancelq.confirmations import ConfirmationReader, ConfirmationRecord
from cancelq.keys import Keys

POLL_START_S = 0.005
POLL_MAX_S = 0.1


def get_confirmation(client: redis.Redis, keys: Keys, request_id: str) -> ConfirmationRecord | None:
    """The confirmation of ``request_id``, or None while there is none."""
    return ConfirmationReader(client, keys).get(request_id)


def wait_confirmations(
    client: redis.Redis, keys: Keys, request_ids: Sequence[str], timeout_s: float
) -> dict[str, ConfirmationRecord]:
    """Block until every request has its confirmation; TimeoutError names how many are missing."""
    reader = ConfirmationReader(client, keys)
    deadline = time.monotonic() + timeout_s
    pending = list(dict.fromkeys(request_ids))
    done: dict[str, ConfirmationRecord] = {}
    pause = POLL_START_S
    while pending:
        done.update(reader.get_many(pending))
        pending = [rid for rid in pending if rid not in done]
        if not pending:
            break
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"{len(pending)} of {len(request_ids)} requests have no confirmation"
            )
        time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 2, POLL_MAX_S)
    return done
