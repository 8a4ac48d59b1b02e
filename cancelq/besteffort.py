"""Best-effort side work: an update (a metric, a gauge) that must never fail the caller.

Workers and confirmers call every metric update through :func:`safely`: a broken metric is
logged and swallowed, so observation can never fail a cancel or a confirmation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ParamSpec

log = logging.getLogger(__name__)

P = ParamSpec("P")


def safely(update: Callable[P, object], *args: P.args, **kwargs: P.kwargs) -> None:
    """Run ``update``; log and swallow any error so it can never fail the caller."""
    try:
        update(*args, **kwargs)
    except Exception:  # best effort by design
        log.warning("metric update failed", exc_info=True)
