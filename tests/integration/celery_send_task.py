"""A Python engine that already uses Celery sends cancels with ``send_task``: its own plain
``Celery`` app, the JSON serializer, nothing of cancelq imported (checked at the end).

Usage: ``python celery_send_task.py REDIS_URL MODE '[{cancel}, ...]'``; prints the task ids
(the request ids: the cancels carry no ``requestId``) as a JSON array. Modes: ``float`` sends
``enqueuedAt`` as ``time.time() * 1000`` exactly, ``int`` as ``int(time.time() * 1000)``,
``annotated`` the engine's own fields beside seconds instead of milliseconds, ``positional``
the fields as the one positional argument (``args=[{...}]``).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from celery import Celery


def call(mode: str, cancel: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``send_task`` for one cancel in ``mode``."""
    if mode == "float":
        return {"kwargs": {**cancel, "enqueuedAt": time.time() * 1000}}
    if mode == "annotated":
        return {"kwargs": {**cancel, "enqueuedAt": time.time(), "strategy": "mm-3", "v": 2}}
    if mode == "positional":
        return {"args": [{**cancel, "enqueuedAt": int(time.time() * 1000)}]}
    return {"kwargs": {**cancel, "enqueuedAt": int(time.time() * 1000)}}


def send(redis_url: str, cancels: list[dict[str, Any]], mode: str) -> list[str]:
    app = Celery("engine", broker=redis_url)
    app.conf.task_serializer = "json"
    ids = []
    for cancel in cancels:
        result = app.send_task("cancelq.cancel_order", queue="cancelq", **call(mode, cancel))
        ids.append(str(result.id))  # the request id: the outcome is cancelq:outcome:<id>
    return ids


def main() -> None:
    redis_url, mode, cancels = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    ids = send(redis_url, cancels, mode)
    ours = sorted(m for m in sys.modules if m.split(".")[0] in {"cancelq", "worker", "producers"})
    if ours:
        sys.exit(f"the engine imported cancelq's own modules: {ours}")
    print(json.dumps(ids))


if __name__ == "__main__":
    main()
