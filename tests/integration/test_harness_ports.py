"""The test harness's ports: picked below the kernel's ephemeral range (an outgoing
connection's local port cannot take one before its server binds it), and a Sentinel whose port
was taken anyway starts on another one instead of leaving the cluster unformed."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cancelq.harness import embedded_redis
from cancelq.harness.embedded_redis import PICK_FROM, free_port
from cancelq.harness.sentinel import SentinelCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_free_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    below = embedded_redis._ephemeral_low()
    if below is None:
        pytest.skip("no /proc/sys/net/ipv4/ip_local_port_range here")
    ports = {free_port() for _ in range(20)}
    assert all(PICK_FROM <= port < below for port in ports)
    assert len(ports) > 10, "picked at random, not one after the other"
    for port in list(ports)[:3]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_a_sentinel_whose_port_was_taken_starts_on_another(tmp_path: Path) -> None:
    cluster = SentinelCluster(tmp_path, replicas=1, sentinels=3)
    taken = cluster.sentinel_ports[1]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        with cluster:
            assert cluster.sentinel_ports[1] != taken
            assert cluster.master().port == cluster.servers[0].port
            assert f"127.0.0.1:{cluster.sentinel_ports[1]}" in cluster.url
