"""Fault tier: real processes (redis-server, the simulator, ``cancelq worker``), one private
Redis per test module, every test marked ``faults`` with its own timeout."""

from __future__ import annotations

#: Worker settings every fault test starts from: the shipped ones (the visibility timeout of
#: 300 s, the pod beat and TTL: what "no cancel lost" rests on), but a SIGTERM grace of 5 s
#: (tests/faults/test_shutdown.py also runs the shipped 25 s), the health file refreshed every
#: second, and no confirmer (nothing here reads confirmations; a documented mode:
#: ``CANCELQ_CONFIRM_DEADLINE_S=0``).
FAULT_ENV = {
    "CANCELQ_SHUTDOWN_GRACE_S": "5",
    "CANCELQ_CONFIRM_DEADLINE_S": "0",
    "CANCELQ_HEARTBEAT_S": "1",
}
