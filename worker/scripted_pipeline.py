"""Pipelines that call Lua scripts by SHA, without redis-py's extra round trip.

redis-py runs ``SCRIPT EXISTS`` before every pipeline that holds a registered script: one more
round trip per batch, and round trips are the worker's largest cost (``python -m
bench.profile``). Here scripts are queued as plain ``EVALSHA``; when Redis answers NOSCRIPT (it
restarted or its script cache was flushed) the scripts are loaded and the pipeline runs once
more. Whatever a caller queues must therefore be safe to run twice, and safe to have run partly:
in a pipeline (no MULTI) the commands around a failed EVALSHA still run. The scripts of this
package check before they write (first outcome wins, claims by owner, an expectation only with a
new outcome), so queue scripts, not plain writes whose effect depends on a script beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


def queue_script(
    pipe: redis.client.Pipeline,
    script: Script,
    keys: Sequence[str],
    args: Sequence[str | int],
) -> None:
    """Queue ``script`` on ``pipe`` by its SHA."""
    pipe.evalsha(script.sha, len(keys), *keys, *args)


def run_pipeline(
    client: redis.Redis,
    fill: Callable[[redis.client.Pipeline], None],
    scripts: Sequence[Script],
) -> list[Any]:
    """Queue with ``fill`` and execute; reload ``scripts`` and run again after NOSCRIPT."""
    for attempt in range(2):
        with client.pipeline(transaction=False) as pipe:
            fill(pipe)
            try:
                return list(pipe.execute())
            except NoScriptError:
                if attempt:
                    raise
                for script in scripts:
                    client.script_load(script.script)
    raise AssertionError("unreachable")
