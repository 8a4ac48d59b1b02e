"""The one exception tree of cancelq.

::

    CancelqError                      root: catch this to catch everything of ours
    ├── ConfigError                   settings or accounts file unusable; says which field and why
    ├── ContractError                 a message that is not a valid cancel; names field and rule
    ├── StoreError                    Redis failed or is unreachable (translated from redis-py)
    └── ExchangeError                 talking to the exchange failed
        └── ExchangeUnavailableError  no reply at all (connect/read timeout, reset, DNS);
                                      retryable: cancel is idempotent. ``retry_after`` is None:
                                      the retry policy chooses the backoff.

An exchange *reply* (any HTTP status, any retCode) is not an exception: the client returns it as
one result type and the retCode table classifies it. Messages never contain secrets.
"""

from __future__ import annotations


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
    """Redis could not do what was asked."""


class ExchangeError(CancelqError):
    """The exchange could not be talked to."""


class ExchangeUnavailableError(ExchangeError):
    """No reply from the exchange: worth retrying, cancel is idempotent."""

    retry_after: float | None = None

    def __init__(self, kind: str, detail: str) -> None:
        self.kind = kind
        super().__init__(f"{kind}: {detail}")
