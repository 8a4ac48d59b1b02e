"""The ``cancelq`` executable. Its first act: gevent/eventlet monkey-patching when a worker is
started with ``--pool gevent`` (it must happen before anything imports sockets or threads)."""

from __future__ import annotations

import sys


def main() -> None:
    if "worker" in sys.argv[1:2]:
        from celery import maybe_patch_concurrency

        maybe_patch_concurrency(sys.argv, ["-P"], ["--pool"])
    from cancelq.cli import app

    app()
