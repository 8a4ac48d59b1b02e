"""Rate limits: per UID per endpoint per category over a rolling 1 s, and per IP over 5 s.

The algorithm (:class:`RollingWindow`, a log of ``(time, units)``) is apart from the policy
(:class:`RateLimiter`, which chooses the limit for a UID/endpoint/category and the per-IP ban).

Defaults are Bybit's (requests per second, per UID):

==================== ===== ====== ======= ======
endpoint             spot  linear inverse option
==================== ===== ====== ======= ======
order/create          20    10     10      10
order/cancel          20    10     10      10
order/cancel-batch    20    10     10      10   (counted per item)
order/cancel-all      20    10     10       1
order/realtime        50    50     50      50
==================== ===== ====== ======= ======
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

WINDOW_MS = 1000
ANY = "*"

DEFAULT_LIMITS: dict[tuple[str, str], int] = {
    ("order/create", "spot"): 20,
    ("order/create", ANY): 10,
    ("order/cancel", "spot"): 20,
    ("order/cancel", ANY): 10,
    ("order/cancel-batch", "spot"): 20,
    ("order/cancel-batch", ANY): 10,
    ("order/cancel-all", "spot"): 20,
    ("order/cancel-all", "option"): 1,
    ("order/cancel-all", ANY): 10,
    ("order/realtime", ANY): 50,
}
FALLBACK_LIMIT = 10


@dataclass(frozen=True, slots=True)
class Decision:
    """One limiter answer; the three values feed the ``X-Bapi-Limit*`` headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_ms: int


class RollingWindow:
    """Units spent in the last ``window_ms``; spending is all-or-nothing."""

    __slots__ = ("_log", "_used", "window_ms")

    def __init__(self, window_ms: int = WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._log: deque[tuple[int, int]] = deque()
        self._used = 0

    def _expire(self, now_ms: int) -> None:
        horizon = now_ms - self.window_ms
        log = self._log
        while log and log[0][0] <= horizon:
            self._used -= log.popleft()[1]

    def used(self, now_ms: int) -> int:
        self._expire(now_ms)
        return self._used

    def reset_at(self, now_ms: int) -> int:
        """When the oldest spent unit frees (``now`` if nothing is spent)."""
        return self._log[0][0] + self.window_ms if self._log else now_ms

    def try_spend(self, units: int, limit: int, now_ms: int) -> bool:
        self._expire(now_ms)
        if self._used + units > limit:
            return False
        self._log.append((now_ms, units))
        self._used += units
        return True


def resolve_limit(table: dict[tuple[str, str], int], endpoint: str, category: str) -> int | None:
    """Most specific entry: ``(endpoint, category)``, then ``(endpoint, *)``."""
    found = table.get((endpoint, category))
    if found is None:
        found = table.get((endpoint, ANY))
    return found


class RateLimiter:
    """Per-UID budgets and the per-IP rule, with overrides changeable at run time."""

    def __init__(
        self,
        overrides: dict[tuple[str, str], int] | None = None,
        *,
        ip_limit: int = 600,
        ip_window_ms: int = 5000,
        ip_ban_ms: int = 600_000,
        enabled: bool = True,
    ) -> None:
        self.global_overrides: dict[tuple[str, str], int] = dict(overrides or {})
        self.uid_overrides: dict[int, dict[tuple[str, str], int]] = {}
        self.ip_limit = ip_limit
        self.ip_window_ms = ip_window_ms
        self.ip_ban_ms = ip_ban_ms
        self.enabled = enabled
        self._windows: dict[tuple[int, str, str], RollingWindow] = {}
        self._ip_windows: dict[str, RollingWindow] = {}
        self._banned_until: dict[str, int] = {}

    def limit_for(self, uid: int, endpoint: str, category: str) -> int:
        for table in (self.uid_overrides.get(uid), self.global_overrides, DEFAULT_LIMITS):
            if table:
                found = resolve_limit(table, endpoint, category)
                if found is not None:
                    return found
        return FALLBACK_LIMIT

    def set_limit(self, endpoint: str, category: str, limit: int, uid: int | None = None) -> None:
        table = self.global_overrides if uid is None else self.uid_overrides.setdefault(uid, {})
        table[(endpoint, category or ANY)] = limit

    def check(self, uid: int, endpoint: str, category: str, units: int, now_ms: int) -> Decision:
        """Spend ``units`` of this UID's budget, or refuse without spending."""
        limit = self.limit_for(uid, endpoint, category)
        key = (uid, endpoint, category)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = RollingWindow()
        allowed = window.try_spend(units, limit, now_ms) if self.enabled else True
        remaining = max(0, limit - window.used(now_ms))
        return Decision(allowed, limit, remaining, window.reset_at(now_ms))

    def ip_check(self, ip: str, now_ms: int) -> bool:
        """False while ``ip`` is banned; a request that breaks the rule starts the ban."""
        if not self.enabled:
            return True
        until = self._banned_until.get(ip)
        if until is not None:
            if now_ms < until:
                return False
            del self._banned_until[ip]
        window = self._ip_windows.get(ip)
        if window is None:
            window = self._ip_windows[ip] = RollingWindow(self.ip_window_ms)
        if window.try_spend(1, self.ip_limit, now_ms):
            return True
        self._banned_until[ip] = now_ms + self.ip_ban_ms
        return False

    def banned(self) -> dict[str, int]:
        return dict(self._banned_until)

    def reset(self) -> None:
        self._windows.clear()
        self._ip_windows.clear()
        self._banned_until.clear()
