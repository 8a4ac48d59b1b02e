"""A Python engine that already uses Celery sends cancels with ``send_task``: its own plain
``Celery`` app, the JSON serializer, nothing of cancelq imported (checked at the end).

Usage: ``python celery_send_task.py REDIS_URL int|float '[{cancel}, ...]'``; prints the task ids
(the request ids: the cancels carry no ``requestId``) as a JSON array. ``float`` sends
``enqueuedAt`` as ``time.time() * 1000`` exactly, ``int`` as ``int(time.time() * 1000)``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from celery import Celery


def send(redis_url: str, cancels: list[dict[str, Any]], *, float_clock: bool) -> list[str]:
    app = Celery("engine", broker=redis_url)
    app.conf.task_serializer = "json"
    ids = []
    for cancel in cancels:
        enqueued_at = time.time() * 1000 if float_clock else int(time.time() * 1000)
        result = app.send_task(
            "cancelq.cancel_order",
            kwargs={**cancel, "enqueuedAt": enqueued_at},
            queue="cancelq",
        )
        ids.append(str(result.id))  # the request id: the outcome is cancelq:outcome:<id>
    return ids


def main() -> None:
    redis_url, mode, cancels = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    ids = send(redis_url, cancels, float_clock=mode == "float")
    ours = sorted(m for m in sys.modules if m.split(".")[0] in {"cancelq", "worker", "producers"})
    if ours:
        sys.exit(f"the engine imported cancelq's own modules: {ours}")
    print(json.dumps(ids))


if __name__ == "__main__":
    main()
