"""The kind of a Redis failure, read from redis-py's error under ours: the ``kind`` label of
``cancelq_store_errors_total`` (a bounded set)."""

from __future__ import annotations

import pytest
import redis
from redis._parsers.base import BaseParser

from cancelq.errors import (
    STORE_ERROR_KINDS,
    NotReplicatedError,
    StoreError,
    StoreFullError,
    is_out_of_memory,
    store_error_kind,
)


def raised_from(cause: BaseException) -> StoreError:
    try:
        try:
            raise cause
        except redis.RedisError as exc:
            raise StoreError(f"taking in a cancel failed: {exc}") from exc
    except StoreError as ours:
        return ours


@pytest.mark.parametrize(
    ("cause", "kind"),
    [
        (redis.exceptions.OutOfMemoryError("command not allowed when used memory"), "oom"),
        (
            redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
            "readonly",
        ),
        (redis.exceptions.NoPermissionError("this user has no permissions"), "noperm"),
        (redis.exceptions.ConnectionError("Connection refused"), "unavailable"),
        (redis.exceptions.TimeoutError("Timeout reading"), "unavailable"),
        (redis.exceptions.BusyLoadingError("Redis is loading"), "unavailable"),
        (redis.exceptions.ResponseError("WRONGTYPE Operation against a key"), "other"),
    ],
)
def test_the_kind_comes_from_the_redis_error_it_was_raised_from(
    cause: redis.RedisError, kind: str
) -> None:
    error = raised_from(cause)
    assert error.kind == kind
    assert kind in STORE_ERROR_KINDS


def test_our_own_subclasses_name_their_kind() -> None:
    assert StoreFullError("enqueue refused").kind == "oom"
    short = NotReplicatedError("x", acked=0, wanted=1, timeout_ms=100, request_ids=["r1"])
    assert short.kind == "not_replicated"
    assert (short.acked, short.wanted, short.request_ids) == (0, 1, ["r1"])
    assert StoreError("plain").kind == "other"
    assert store_error_kind(None) == "other"


def test_an_oom_reply_parsed_by_redis_py_is_oom() -> None:
    parsed = BaseParser.parse_error
    reply = (
        "OOM command not allowed when used memory > 'maxmemory'. script: 1da0c, on @user_script:52."
    )
    assert store_error_kind(parsed(reply)) == "oom"
    assert (
        store_error_kind(parsed("NOPERM User producer has no permissions to run 'del'")) == "noperm"
    )


def test_a_transaction_aborted_at_exec_for_want_of_memory_is_oom() -> None:
    """Commands queued while memory was there, refused at EXEC (``EXECABORT ... OOM``): redis-py
    raises ExecAbortError with no queued error to raise instead."""
    aborted = redis.exceptions.ExecAbortError(
        "Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'."
    )
    assert is_out_of_memory(aborted)
    assert store_error_kind(aborted) == "oom"
    other = redis.exceptions.ExecAbortError("Transaction discarded because of previous errors.")
    assert not is_out_of_memory(other)
    assert store_error_kind(other) == "other"
