"""The one exception tree of cancelq.

::

    CancelqError                      root: catch this to catch everything of ours
    ├── ConfigError                   settings or accounts file unusable; says which field and why
    ├── ContractError                 a message that is not a valid cancel; names field and rule
    ├── StoreError                    Redis failed or is unreachable (translated from redis-py);
    │   │                             ``kind`` says how (:data:`STORE_ERROR_KINDS`); retryable
    │   ├── StoreFullError            Redis refused a write: out of memory (used memory over
    │   │                             ``maxmemory``, policy ``noeviction``); nothing was written
    │   └── NotReplicatedError        written on the master, but fewer replicas than asked held
    │                                 it in time (``WAIT``): it may not survive a failover
    └── ExchangeError                 talking to the exchange failed
        └── ExchangeUnavailableError  no reply at all (connect/read timeout, reset, DNS);
                                      retryable: cancel is idempotent. ``retry_after`` is None:
                                      the retry policy chooses the backoff.

An exchange *reply* (any HTTP status, any retCode) is not an exception: the client returns it as
one result type and the retCode table classifies it. Messages never contain secrets.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

#: The bounded values of :attr:`StoreError.kind` (the ``kind`` label of
#: ``cancelq_store_errors_total``): ``oom`` Redis at its maxmemory, ``readonly`` a replica (a
#: failover under way), ``noperm`` the ACL user may not do it, ``unavailable`` no connection or
#: no reply, ``not_replicated`` fewer replicas than asked, ``other`` anything else.
STORE_ERROR_KINDS = ("oom", "readonly", "noperm", "unavailable", "not_replicated", "other")


class CancelqError(Exception):
    """Root of every error cancelq raises on purpose."""


class ConfigError(CancelqError):
    """The settings or the accounts file cannot be used."""


class ContractError(CancelqError):
    """A cancel request breaks the message contract."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class StoreError(CancelqError):
    """Redis could not do what was asked. Raised ``from`` the redis-py error, which
    :attr:`kind` reads."""

    @property
    def kind(self) -> str:
        """What went wrong, one of :data:`STORE_ERROR_KINDS`."""
        return store_error_kind(self)


class StoreFullError(StoreError):
    """Redis is at its ``maxmemory`` and refuses writes (``OOM command not allowed``): nothing
    of the refused command (or transaction) was written. Retry once memory is freed."""


class NotReplicatedError(StoreError):
    """The write is on the master, but only ``acked`` of ``wanted`` replicas held it within
    ``timeout_ms`` (Redis ``WAIT``): a failover now could lose it."""

    def __init__(
        self,
        message: str,
        *,
        acked: int,
        wanted: int,
        timeout_ms: int,
        request_ids: Sequence[str] = (),
    ) -> None:
        self.acked, self.wanted, self.timeout_ms = acked, wanted, timeout_ms
        self.request_ids = list(request_ids)
        super().__init__(message)


class ExchangeError(CancelqError):
    """The exchange could not be talked to."""


class ExchangeUnavailableError(ExchangeError):
    """No reply from the exchange: worth retrying, cancel is idempotent."""

    retry_after: float | None = None

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {detail}")


def is_out_of_memory(exc: BaseException) -> bool:
    """Redis refused for want of memory: ``OOM`` on a command, or ``EXECABORT`` of a
    transaction whose commands were queued before memory ran out and refused at ``EXEC``."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return True
    return isinstance(exc, redis.exceptions.ExecAbortError) and "OOM" in str(exc)


def store_error_kind(exc: BaseException | None) -> str:
    """The kind of a Redis failure (one of :data:`STORE_ERROR_KINDS`), read from ``exc`` and
    what it was raised from; redis-py names Redis's error prefixes (``OOM``, ``READONLY``,
    ``NOPERM``), also inside a script's or a pipeline's reply."""
    for _ in range(4):  # ours, then redis-py's: a short chain
        if exc is None:
            break
        if isinstance(exc, StoreFullError) or is_out_of_memory(exc):
            return "oom"
        if isinstance(exc, NotReplicatedError):
            return "not_replicated"
        if isinstance(exc, redis.exceptions.ReadOnlyError):
            return "readonly"
        if isinstance(exc, redis.exceptions.NoPermissionError):
            return "noperm"
        if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            return "unavailable"
        exc = exc.__cause__
    return "other"
