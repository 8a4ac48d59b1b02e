"""One ``MULTI``/``EXEC``, and ``WAIT`` when asked, on one connection, in one round trip.

``WAIT numreplicas timeout`` counts the replicas holding every write made *on its connection*,
so it must follow the transaction on the same one: redis-py's pool may hand the next command
any connection. This takes one from the pool and sends everything there; a dropped connection
is retried as redis-py retries its own pipelines (the connection's ``Retry``: a transaction
whose reply was lost may then be applied twice, which the worker's dedup answers once).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.typing import EncodableT

Command = Sequence[EncodableT]


def run_transaction(
    client: redis.Redis,
    commands: Sequence[Command],
    *,
    replicas: int = 0,
    timeout_ms: int = 0,
) -> int | None:
    """Run ``commands`` in one ``MULTI``/``EXEC``; with ``replicas`` > 0 then ``WAIT replicas
    timeout_ms`` and return how many replicas acknowledged the writes (else None). The first
    error Redis reports is raised (a refused command aborts the whole transaction: nothing of
    it is written)."""
    packed: list[Command] = [("MULTI",), *commands, ("EXEC",)]
    if replicas:
        packed.append(("WAIT", replicas, timeout_ms))
    pool = client.connection_pool
    connection: Any = pool.get_connection()  # redis-py's Connection is untyped here
    try:
        replies = connection.retry.call_with_retry(
            lambda: _send(connection, packed), lambda _error: connection.disconnect()
        )
    except BaseException:
        connection.disconnect()  # a reply may be left unread: never reuse it
        raise
    finally:
        pool.release(connection)
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    executed = replies[len(commands) + 1]
    for reply in executed if isinstance(executed, list) else []:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return int(replies[-1]) if replicas else None


def _send(connection: Any, packed: Sequence[Command]) -> list[Any]:
    connection.send_packed_command(connection.pack_commands(packed))
    return [_read(connection) for _ in packed]


def _read(connection: Any) -> Any:
    """One reply; an error reply is returned, not raised, so every reply is read."""
    try:
        return connection.read_response()
    except redis.ResponseError as exc:
        return exc
