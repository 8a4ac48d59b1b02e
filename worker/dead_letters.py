"""Dead letters: messages on the queue that could not even be read as a cancel.

Each one leaves a record in a bounded Redis stream (``cancelq:dead-letters``, ``XADD MAXLEN ~``),
a ``cancelq_dead_letters_total{reason}`` increment and a log line; when the message names a
request id (its Celery ``id`` header), that request also gets a ``rejected`` outcome, so the
producer waiting on it is answered.

The record holds the reason, content type, size, when (``time``, epoch ms), which worker
process (``pod``, its id in ``worker/pods.py``), the task the message names and a short *safe*
preview: JSON is re-rendered without any field whose name could carry a credential, configured
secrets and long key-like runs are masked, and the text is cut to :data:`PREVIEW_CHARS`. It
also keeps the message's JSON body, credential-named fields removed, for ``cancelq
dead-letters replay`` (``body``; or ``unreplayable``, why not: ``worker/dead_letter_bodies.py``).
Recording never raises: a dead letter that cannot be written is logged, and the worker keeps
working.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any, Final

import redis

from cancelq.besteffort import safely
from cancelq.contract import REQUEST_ID_RE
from cancelq.keys import Keys
from cancelq.worker.dead_letter_bodies import (
    SECRET_NAME_RE,
    TOO_LARGE,
    KeptBody,
    keep_body,
    masked,
)
from cancelq.worker.metrics import Metrics

log = logging.getLogger(__name__)

PREVIEW_CHARS: Final = 160
DEFAULT_MAXLEN: Final = 10_000
MAX_SCRUB_DEPTH: Final = 4


class Reason(StrEnum):
    """Why a message is a dead letter (the bounded ``reason`` label)."""

    NOT_JSON = "not_json"  # the raw queue item is not a JSON document
    BAD_ENVELOPE = "bad_envelope"  # JSON, but not a kombu/Celery message envelope
    TOO_LARGE = "too_large"  # over the size limit, not even parsed
    DECODE_ERROR = "decode_error"  # the body does not decode with its content type
    CONTENT_DISALLOWED = "content_disallowed"  # pickle or any type but JSON: never decoded
    UNKNOWN_TASK = "unknown_task"  # a task name this worker does not run
    UNKNOWN_MESSAGE = "unknown_message"  # no task name at all
    BAD_BODY = "bad_body"  # not [args, kwargs, embed] with a keyword-argument object
    INVALID_TASK = "invalid_task"  # Celery refused the task message
    PROTOCOL_V1 = "protocol_v1"  # Celery protocol v1 (task name in the body): never executed


RejectOutcome = Callable[[str, str], None]


class DeadLetters:
    """Records dead letters; ``reject(request_id, reason)`` writes a ``rejected`` outcome."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        metrics: Metrics,
        secrets: Iterable[str] = (),
        *,
        maxlen: int = DEFAULT_MAXLEN,
        reject: RejectOutcome | None = None,
        pod: str = "",
    ) -> None:
        """``pod``: the id of the worker process recording (``worker/pods.py``)."""
        self._redis = client
        self._key = keys.dead_letters()
        self._metrics = metrics
        self._secrets = [s for s in secrets if s]
        self._maxlen = maxlen
        self._reject = reject
        self._pod = pod

    def record(
        self,
        reason: Reason,
        raw: bytes | str | None,
        *,
        content_type: str | None = None,
        request_id: str | None = None,
        detail: str = "",
    ) -> None:
        rid = request_id if request_id and REQUEST_ID_RE.fullmatch(request_id) else None
        size = len(raw.encode() if isinstance(raw, str) else raw) if raw is not None else 0
        kept = self._kept(reason, raw)
        entry = {
            "reason": reason.value,
            "contentType": (content_type or "")[:64],
            "size": str(size),
            "preview": self.preview(raw),
            "requestId": rid or "",
            "detail": self._mask(detail)[:PREVIEW_CHARS],
            "time": str(int(time.time() * 1000)),
            "pod": self._pod,
            "task": self._mask(kept.task)[:64],
            "body": kept.body,
            "unreplayable": kept.unreplayable,
        }
        safely(self._metrics.dead_letters.labels(reason.value).inc)
        log.warning(
            "dead letter: %s (%s bytes)%s",
            reason.value,
            size,
            f": {entry['detail']}" if entry["detail"] else "",
            extra={"requestId": rid, "reason": reason.value},
        )
        try:
            self._redis.xadd(self._key, entry, maxlen=self._maxlen, approximate=True)  # type: ignore[arg-type]
        except redis.RedisError:
            log.error("dead letter not recorded: redis unavailable", extra={"requestId": rid})
        if rid is not None and self._reject is not None:
            self._reject_outcome(rid, f"message: {reason.value}")

    def _kept(self, reason: Reason, raw: bytes | str | None) -> KeptBody:
        if reason is Reason.TOO_LARGE:  # only a prefix of the item reached the recorder
            return KeptBody(unreplayable=TOO_LARGE)
        try:
            return keep_body(raw, self._secrets)
        except Exception:  # a body we cannot read must not cost the record
            log.exception("dead letter body not kept")
            return KeptBody(unreplayable="not kept: unreadable")

    def _reject_outcome(self, request_id: str, reason: str) -> None:
        assert self._reject is not None
        try:
            self._reject(request_id, reason)
        except Exception:  # an outcome we cannot write must not stop the consumer
            log.error("rejected outcome not recorded", extra={"requestId": request_id})

    def preview(self, raw: bytes | str | None) -> str:
        """A short, printable, secret-free rendering of ``raw``."""
        if raw is None:
            return ""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        text = text[: PREVIEW_CHARS * 64]
        with contextlib.suppress(ValueError, RecursionError):
            text = json.dumps(scrub(json.loads(text)), separators=(",", ":"))
        return self._mask(text)[:PREVIEW_CHARS]

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            for line in secret.splitlines():
                if len(line.strip()) >= 8:
                    text = text.replace(line.strip(), "***")
        return masked(text)


def scrub(value: Any, depth: int = 0) -> Any:
    """``value`` without any mapping entry whose name could be a credential."""
    if depth >= MAX_SCRUB_DEPTH:
        return "..."
    if isinstance(value, Mapping):
        return {
            str(k): scrub(v, depth + 1)
            for k, v in value.items()
            if not SECRET_NAME_RE.search(str(k))
        }
    if isinstance(value, list):
        return [scrub(v, depth + 1) for v in value[:8]]
    return value
