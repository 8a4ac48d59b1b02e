"""Connections to a Sentinel-managed master that reconnect to the master the Sentinels name.

redis-py's ``SentinelManagedConnection`` asks the Sentinels for the master's address in
``connect()``. From redis-py 6 on, a connection that loses its socket *inside* a command (a
health-check PING that times out, a pipeline retried after a timeout) reconnects in
``send_packed_command`` through ``connect_check_health()``, which opens a socket to the
address the connection last had: the old master. A frozen master (SIGSTOP, a hung VM, a cut
network: the kernel still accepts the TCP connection) then holds every retry of that command
for its socket timeout, one after the other, for as long as it stays frozen. Measured with
kombu's unacked record of a popped message, on Celery's event loop: the consumer stopped for
the whole freeze, 22 s after a failover that took 4 s (``tests/faults/test_sentinel_failover``).

Here that reconnect goes through ``connect()``, so each retry asks the Sentinels and reaches
the new master as soon as one is promoted. ``cancelq.redis_client.connect`` (cancelq's own
clients) and kombu's Sentinel channel (``worker/host/kombu_channel.py``) use these classes.
This overrides a redis-py method: redis is pinned in ``pyproject.toml`` and
``tests/integration/test_sentinel_connections.py`` fails when an upgrade changes the behaviour.
"""

from __future__ import annotations

from typing import Any

from redis.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection


class FollowingConnection(SentinelManagedConnection):
    """A master connection whose every reconnect asks the Sentinels."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()  # type: ignore[no-untyped-call]  # the Sentinels' master, retried
        super().send_packed_command(command, check_health=check_health)  # type: ignore[no-untyped-call]


class FollowingSSLConnection(FollowingConnection, SentinelManagedSSLConnection):
    """:class:`FollowingConnection` over TLS."""
