"""Where the framework overrides record what they refuse: one recorder per process.

Celery and kombu instantiate the overrides themselves (from the class paths in the Celery
config), so the recorder cannot be passed in: :func:`bind` sets it once at start-up
(``celery_consumer.install``), and :func:`record` is what both overrides call.
"""

from __future__ import annotations

import logging

from cancelq.worker.dead_letters import DeadLetters, Reason

log = logging.getLogger(__name__)


class _Bound:
    """The recorder of this process (None: log only)."""

    recorder: DeadLetters | None = None


def bind(recorder: DeadLetters | None) -> None:
    _Bound.recorder = recorder


def record(
    reason: Reason,
    raw: bytes | str | None,
    *,
    content_type: str | None = None,
    request_id: str | None = None,
    detail: str = "",
) -> None:
    """Record a dead letter; never raises (recording must never stop the consumer)."""
    recorder = _Bound.recorder
    try:
        if recorder is None:
            log.warning("dead letter: %s (no recorder bound)", reason.value)
            return
        recorder.record(
            reason, raw, content_type=content_type, request_id=request_id, detail=detail
        )
    except Exception:  # recording must never stop the consumer
        log.exception("dead letter not recorded")
