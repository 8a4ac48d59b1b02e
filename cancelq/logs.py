"""Logging set-up: plain text or one JSON object a line, and a last-line-of-defence redactor.

Code never logs secrets; :class:`RedactSecrets` additionally masks any configured secret value
that would reach a log record anyway (message, arguments or exception text).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from pythonjsonlogger.json import JsonFormatter

REDACTED = "***"


class RedactSecrets(logging.Filter):
    """Replace every known secret value in a record's rendered text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        cleaned = self._mask(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = self._mask(record.exc_text)
        for name, value in vars(record).items():  # extras (Celery puts task kwargs in "data")
            if name not in _STANDARD and isinstance(value, str | dict | list | tuple):
                setattr(record, name, self._scrub(value))
        return True

    def _scrub(self, value: object) -> object:
        if isinstance(value, str):
            return self._mask(value)
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        return value

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}
#: Celery logs every task received and succeeded at INFO: noise at thousands of cancels a day
#: (cancelq logs each outcome itself). Shown again with CANCELQ_LOG_LEVEL=DEBUG.
PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")


def configure_logging(fmt: str, level: str, secrets: Iterable[str] = ()) -> None:
    """Configure the root logger once for a process (worker, CLI, demo)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level", "asctime": "time"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in PER_TASK_LOGGERS:
        logging.getLogger(name).setLevel(level if level == "DEBUG" else "WARNING")
