"""Redis's two ways of refusing for want of memory, read from a real Redis at its maxmemory:
``OOM`` on a command, and ``EXECABORT`` of a transaction whose commands were queued while there
was memory and refused at ``EXEC`` (another client filled Redis in between: kombu's unacked
record met it in a CI run, and it ended the worker before it was recognised)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from cancelq.errors import is_out_of_memory, store_error_kind
from cancelq.harness.embedded_redis import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
def small() -> Iterator[RedisServer]:
    with RedisServer(extra_args=("--maxmemory", "4mb", "--maxmemory-policy", "noeviction")) as s:
        yield s


def fill(client: redis.Redis) -> None:
    for i in range(100_000):
        try:
            client.set(f"junk:{i}", "x" * 1024)
        except redis.exceptions.OutOfMemoryError:
            return
    raise AssertionError("Redis never filled")


def test_a_transaction_queued_with_memory_and_executed_without_is_out_of_memory(
    small: RedisServer,
) -> None:
    writer, filler = redis.Redis.from_url(small.url), redis.Redis.from_url(small.url)
    connection = writer.connection_pool.get_connection()
    connection.send_command("MULTI")
    assert connection.read_response() == b"OK"
    connection.send_command("HSET", "unacked", "tag", "message")
    assert connection.read_response() == b"QUEUED"
    fill(filler)  # and below what it uses, whatever it freed since: no room at EXEC
    used = int(filler.info("memory")["used_memory"])
    filler.config_set("maxmemory", used - 512 * 1024)
    connection.send_command("EXEC")
    with pytest.raises(redis.exceptions.ExecAbortError) as aborted:
        connection.read_response()
    assert is_out_of_memory(aborted.value)
    assert store_error_kind(aborted.value) == "oom"
    writer.connection_pool.release(connection)


def test_a_command_refused_at_maxmemory_is_out_of_memory(small: RedisServer) -> None:
    client = redis.Redis.from_url(small.url)
    fill(client)
    with pytest.raises(redis.exceptions.OutOfMemoryError) as refused:
        client.set("one-more", "x" * 1024)
    assert is_out_of_memory(refused.value)
    with pytest.raises(redis.exceptions.ResponseError) as in_multi, client.pipeline() as pipe:
        pipe.delete("junk:0").set("one-more", "x" * 1024).execute()  # even DEL, in a MULTI
    assert is_out_of_memory(in_multi.value)
    assert store_error_kind(in_multi.value) == "oom"
