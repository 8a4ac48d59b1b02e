"""The README's language-neutral message, pushed with redis-cli: no Celery, no Python producer."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cancelq.harness.embedded_redis import redis_server_binary
from cancelq.outcomes import Status
from tests.support import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_message() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- celery-message -->\s*```json\n(.*?)\n```", text, re.DOTALL)
    assert match, "README lost its celery-message block"
    document = match.group(1)
    json.loads(document)  # the README shows valid JSON
    return document


def redis_cli() -> str:
    found = shutil.which("redis-cli")
    return found or str(Path(redis_server_binary()).with_name("redis-cli"))


def test_the_readme_message_pushed_with_redis_cli_is_cancelled(stack: Stack) -> None:
    order_id = stack.place(order_link_id="non-python-1")
    port = str(stack.redis_server.port)
    subprocess.run(
        [redis_cli(), "-p", port, "LPUSH", "cancelq", readme_message()],
        check=True,
        capture_output=True,
        timeout=10,
    )
    outcome = stack.producer.wait("req-42", 15)
    assert outcome.status is Status.CANCELLED
    assert outcome.orderId == order_id
    assert outcome.enqueuedAt == 1764000000000
    assert stack.order_status(order_id) == "Cancelled"
