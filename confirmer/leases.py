"""Account leases in Redis: one confirmer replica owns an account's stream at a time.

A lease is ``SET NX PX`` with the replica id; the owner renews it (compare-and-renew in Lua)
every ``lease_check_s``; a replica that dies stops renewing and another takes the account over
once the lease expires. Redis errors become :class:`~cancelq.errors.StoreError` here.
"""

from __future__ import annotations

from pathlib import Path

import redis

from cancelq.errors import StoreError
from cancelq.keys import Keys
from cancelq.replies import as_text

_HERE = Path(__file__).parent
TAKEN, RENEWED = 2, 1


class LeaseStore:
    def __init__(self, client: redis.Redis, keys: Keys, replica_id: str, ttl_s: float) -> None:
        self._redis = client
        self._keys = keys
        self.replica_id = replica_id
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._take = client.register_script((_HERE / "lease.lua").read_text())
        self._release = client.register_script((_HERE / "release.lua").read_text())

    def hold(self, account: str) -> int:
        """Take or renew: ``TAKEN`` (2), ``RENEWED`` (1) or 0 (someone else owns it)."""
        try:
            return int(
                self._take(
                    keys=[self._keys.confirm_lease(account)], args=[self.replica_id, self._ttl_ms]
                )
            )
        except redis.RedisError as exc:
            raise StoreError(f"lease of {account}: {exc}") from exc

    def release(self, account: str) -> None:
        try:
            self._release(keys=[self._keys.confirm_lease(account)], args=[self.replica_id])
        except redis.RedisError as exc:
            raise StoreError(f"lease release of {account}: {exc}") from exc

    def owner(self, account: str) -> str | None:
        try:
            value = self._redis.get(self._keys.confirm_lease(account))
        except redis.RedisError as exc:
            raise StoreError(f"lease of {account}: {exc}") from exc
        if value is None:
            return None
        return as_text(value)
