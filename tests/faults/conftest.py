"""Fault tier: real processes (redis-server, the simulator, ``cancelq worker``), one private
Redis per test module, every test marked ``faults`` with its own timeout."""

from __future__ import annotations

#: Worker settings every fault test starts from: a killed worker's messages come back after
#: 10 s (not 300), SIGTERM grace 5 s, no confirmer (nothing here reads confirmations).
FAULT_ENV = {
    "CANCELQ_VISIBILITY_TIMEOUT_S": "10",
    "CANCELQ_SHUTDOWN_GRACE_S": "5",
    "CANCELQ_CONFIRM_DEADLINE_S": "0",
    "CANCELQ_HEARTBEAT_S": "1",
}
