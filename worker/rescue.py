"""Pushes again what the broker lost: the outbox sweep every worker runs (``rescue.lua``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import redis

from cancelq.errors import StoreError
from cancelq.keys import Keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sweep:
    rescued: int
    waiting: int
    cleared: int


class Rescuer:
    def __init__(
        self, client: redis.Redis, keys: Keys, *, after_s: float, batch: int = 100
    ) -> None:
        self._keys = keys
        self._after_ms = int(after_s * 1000)
        self._batch = batch
        script = (
            resources.files("cancelq.worker").joinpath("rescue.lua").read_text(encoding="utf-8")
        )
        self._rescue = client.register_script(script)

    def sweep(self) -> Sweep:
        keys = [
            self._keys.outbox(),
            self._keys.outbox_messages(),
            self._keys.queue,
            self._keys.unacked,
        ]
        try:
            rescued, waiting, cleared = self._rescue(
                keys=keys, args=[self._after_ms, self._batch, self._keys.prefix]
            )
        except redis.RedisError as exc:
            raise StoreError(f"outbox sweep failed: {exc}") from exc
        if rescued:
            log.warning("pushed %d lost cancels again (the broker had dropped them)", rescued)
        return Sweep(int(rescued), int(waiting), int(cleared))
