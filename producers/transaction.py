"""One ``MULTI``/``EXEC``, then ``WAIT``, on one connection.

``WAIT numreplicas timeout`` counts the replicas holding every write made *on its connection*,
so it must follow the transaction on the same one: redis-py's pool may hand the next command
any connection, so this takes one from the pool and runs all of it there, in one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.typing import EncodableT

Command = Sequence[EncodableT]


def transaction_then_wait(
    client: redis.Redis, commands: Sequence[Command], *, replicas: int, timeout_ms: int
) -> int:
    """Run ``commands`` in one ``MULTI``/``EXEC``, then ``WAIT replicas timeout_ms``; returns
    how many replicas acknowledged the writes. The first error Redis reports is raised (a
    refused command aborts the whole transaction: nothing of it is written)."""
    pool = client.connection_pool
    connection: Any = pool.get_connection()  # redis-py's Connection is untyped here
    packed: list[Command] = [("MULTI",), *commands, ("EXEC",), ("WAIT", replicas, timeout_ms)]
    try:
        connection.send_packed_command(connection.pack_commands(packed))
        replies = [_read(connection) for _ in packed]
    except BaseException:
        connection.disconnect()  # a reply may be left unread: never reuse it
        raise
    finally:
        pool.release(connection)
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    executed = replies[-2]
    for reply in executed if isinstance(executed, list) else []:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return int(replies[-1])


def _read(connection: Any) -> Any:
    """One reply; an error reply is returned, not raised, so every reply is read."""
    try:
        return connection.read_response()
    except redis.ResponseError as exc:
        return exc
