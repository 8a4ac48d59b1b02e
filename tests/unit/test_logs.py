from __future__ import annotations

import io
import json
import logging

from cancelq.logs import RedactSecrets, configure_logging

SECRET = "sup3r-secret-token"


def test_redactor_masks_message_arguments_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets([SECRET]))
    logger = logging.getLogger("redaction-test")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("value %s", SECRET)
        try:
            raise ValueError(f"boom {SECRET}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert SECRET not in text
    assert text.count("***") >= 2


def test_json_format_carries_context_fields(capsys: object) -> None:
    configure_logging("json", "INFO", [SECRET])
    try:
        logging.getLogger("t").info(
            "cancel %s", "cancelled", extra={"requestId": "r1", "account": "a"}
        )
        err = capsys.readouterr().err  # type: ignore[attr-defined]
    finally:
        logging.getLogger().handlers.clear()
    record = json.loads(err.strip().splitlines()[-1])
    assert record["message"] == "cancel cancelled"
    assert record["requestId"] == "r1"
    assert record["level"] == "INFO"


def test_extras_are_scrubbed_too() -> None:
    record = logging.LogRecord("celery", logging.INFO, "", 0, "Task received", None, None)
    record.data = {"kwargs": f"{{'orderLinkId': '{SECRET}'}}", "id": "t1"}
    RedactSecrets([SECRET]).filter(record)
    assert SECRET not in str(record.data)
    assert record.data["id"] == "t1"
