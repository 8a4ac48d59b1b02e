"""What the contract read past (``cancelq.contract.Note``): counted and logged, never refusing.

Field names of unknown fields come from producers, so the metric's label set is bounded: a name
of :data:`NAME_RE` is its own label until :data:`MAX_NAMES` names are known to this process,
every other one is counted under :data:`OVERFLOW`. Each (field, reason) is logged once per
process, with the request that showed it first; values are never logged.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from typing import Final

from cancelq.besteffort import safely
from cancelq.contract import Note
from cancelq.worker.metrics import Metrics

log = logging.getLogger(__name__)

NAME_RE: Final = re.compile(r"[A-Za-z0-9_]{1,40}")
MAX_NAMES: Final = 32
OVERFLOW: Final = "_other"


class FieldNotes:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._labels: set[str] = set()
        self._logged: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def observe(self, notes: Sequence[Note], request_id: str) -> None:
        for note in notes:
            label, first = self._admit(note)
            safely(self._metrics.ignored_fields.labels(label, note.reason).inc)
            if first:
                log.warning(
                    "message field %r %s: read past, the cancel goes ahead (logged once per field)",
                    label,
                    _MEANING[note.reason],
                    extra={"requestId": request_id},
                )

    def _admit(self, note: Note) -> tuple[str, bool]:
        """The metric label of ``note``'s field, and whether it is the first of its kind."""
        with self._lock:
            label = note.field if NAME_RE.fullmatch(note.field) else OVERFLOW
            if label not in self._labels and len(self._labels) >= MAX_NAMES:
                label = OVERFLOW
            self._labels.add(label)
            key = (label, note.reason)
            first = key not in self._logged
            self._logged.add(key)
        return label, first


_MEANING: Final = {
    "unknown": "is not part of the contract (ignored)",
    "implausible": "is not a plausible epoch-ms time (dropped from latency and coalescing)",
    "invalid": "has an unusable value (dropped)",
}
