"""redis-py's reconnect inside a command, against real Redis servers: stock
``SentinelManagedConnection`` reconnects to the address it last had (from redis-py 6 on);
``cancelq.sentinel_connections.FollowingConnection`` asks the Sentinels. The Sentinels are a
stand-in that names the master the test chooses (what a failover looks like to a client),
so the switch is exact; ``tests/faults/test_sentinel_failover.py`` runs the real thing.

If the stock test starts failing, redis-py fixed its reconnect: the override can go."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from redis.sentinel import SentinelConnectionPool, SentinelManagedConnection

from cancelq.harness.embedded_redis import RedisServer
from cancelq.sentinel_connections import FollowingConnection, FollowingSSLConnection
from cancelq.worker.host.kombu_channel import SentinelChannel

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SERVICE = "mymaster"


class NamedMaster:
    """The Sentinels as a client sees them: the master's address, changed by a failover."""

    def __init__(self, port: int) -> None:
        self.port = port

    def discover_master(self, _service: str) -> tuple[str, int]:
        return "127.0.0.1", self.port


@pytest.fixture
def servers() -> Iterator[tuple[RedisServer, RedisServer]]:
    with RedisServer() as old, RedisServer() as new:
        yield old, new


def _pool(
    sentinels: NamedMaster, connection_class: type, **options: object
) -> SentinelConnectionPool:
    return SentinelConnectionPool(  # type: ignore[no-untyped-call]
        SERVICE, sentinels, connection_class=connection_class, **options
    )


def _landed_on(server: RedisServer, key: str) -> bool:
    with redis.Redis(port=server.port) as client:
        return bool(client.exists(key))


def _write_after_a_failover(
    servers: tuple[RedisServer, RedisServer], connection_class: type
) -> tuple[bool, bool]:
    """A connection opened to the old master loses its socket; the Sentinels name the new
    one; the same connection sends a write. (landed on old, landed on new)."""
    old, new = servers
    sentinels = NamedMaster(old.port)
    pool = _pool(sentinels, connection_class)
    connection = pool.get_connection()
    assert connection.port == old.port
    sentinels.port = new.port  # the failover
    connection.disconnect()  # the socket lost inside a command (a timed-out PING, a retry)
    connection.send_command("SET", "written", "1")
    assert connection.read_response() in (b"OK", "OK")
    pool.disconnect()
    return _landed_on(old, "written"), _landed_on(new, "written")


def test_stock_redis_py_reconnects_inside_a_command_to_the_old_master(
    servers: tuple[RedisServer, RedisServer],
) -> None:
    assert _write_after_a_failover(servers, SentinelManagedConnection) == (True, False)


def test_cancelqs_connection_reconnects_inside_a_command_to_the_sentinels_master(
    servers: tuple[RedisServer, RedisServer],
) -> None:
    assert _write_after_a_failover(servers, FollowingConnection) == (False, True)


def test_a_frozen_old_master_holds_a_command_one_socket_timeout_not_the_whole_freeze(
    servers: tuple[RedisServer, RedisServer],
) -> None:
    """The fault tier's case: the master frozen (SIGSTOP: the kernel still accepts connections,
    nothing answers), a new one promoted, an idle pooled connection used again (its health
    PING times out, redis-py retries). The write reaches the new master within a few socket
    timeouts instead of waiting for the old one to wake."""
    old, new = servers
    sentinels = NamedMaster(old.port)
    # cancelq's clients' options (worker/runtime.py, the broker's), a shorter socket timeout
    pool = _pool(
        sentinels,
        FollowingConnection,
        socket_timeout=0.5,
        health_check_interval=1,
        retry_on_timeout=True,
    )
    client = redis.Redis(connection_pool=pool)
    client.set("before", "1")
    old.freeze()
    try:
        sentinels.port = new.port
        time.sleep(1.1)  # the pooled connection is due a health check
        started = time.monotonic()
        client.set("after", "1")
        took_s = time.monotonic() - started
    finally:
        old.thaw()
        client.close()
    assert _landed_on(new, "after")
    assert took_s < 3.0, f"{took_s:.1f}s"


def test_cancelqs_clients_and_kombus_sentinel_channel_use_the_following_connections() -> None:
    from cancelq.redis_client import SentinelOptions, connect

    client = connect("sentinel://127.0.0.1:1", SentinelOptions(master=SERVICE))
    assert issubclass(client.connection_pool.connection_class, FollowingConnection)
    tls = connect("sentinel://127.0.0.1:1", SentinelOptions(master=SERVICE, tls=True))
    assert issubclass(tls.connection_pool.connection_class, FollowingSSLConnection)
    # kombu builds its pools' connection class from these two (kombu 5.7: _connparams)
    assert SentinelChannel.connection_class is FollowingConnection
    assert SentinelChannel.connection_class_ssl is FollowingSSLConnection
