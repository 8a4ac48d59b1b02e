"""A replicated Redis watched by Redis Sentinel, all on 127.0.0.1: a master, replicas and
Sentinels (``redis-server --sentinel``), for the tests of failover.

Sentinel's own timings are shortened (a master silent for ``down_after_ms`` is down, the
Sentinels fail over at once): those are Sentinel's settings, not cancelq's. Not below
:data:`DOWN_AFTER_MS`: after a failover, a Sentinel that does not hear from the new master
within down-after (a Sentinel or a node starved of CPU for that long) fails over a second time
on its own, and the master the clients just reconnected to keeps their writes only until
Sentinel demotes it ~10 s later (see :data:`DOWN_AFTER_MS`)::

    with SentinelCluster(tmp_path) as cluster:
        cluster.url          # sentinel://127.0.0.1:p1;sentinel://127.0.0.1:p2;...
        cluster.options      # SentinelOptions("mymaster", ...)
        old = cluster.master()
        old.kill()
        new = cluster.wait_failover(old)
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from cancelq.harness.embedded_redis import RedisServer, TlsFiles, free_port, redis_server_binary
from cancelq.harness.processes import end_process
from cancelq.redis_client import SentinelOptions

MASTER_NAME = "mymaster"
#: Sentinel's ``down-after-milliseconds`` here (the shipped compose file has 5000). At 1000 the
#: SIGKILL fault test failed about 1 run in 8 on a loaded 2-core machine: Sentinel failed over
#: a second time ~1 s after the first. On ``+switch-master`` a Sentinel resets the master's
#: state (``sentinelResetMaster``): the new master counts as unanswered since that instant, its
#: own failover delay is cleared, and the other Sentinels' "master down" flags, set by the vote
#: that has just ended, are kept. A Sentinel whose first PONG from the new master comes later
#: than down-after therefore finds it subjectively down, at once objectively down (the stale
#: flags make the quorum), and its peers vote for its failover though they see the master up.
#: The other replica is promoted; the first new master, which every client had reconnected
#: to, takes their writes until Sentinel turns it into a replica (~10 s: it must report master
#: for 8 s first), then its data is replaced by a full resync: acknowledged enqueues, outcomes
#: and kombu's unacked records of those seconds are gone (``tests/faults/
#: test_sentinel_harness.py`` reproduces it by stalling a Sentinel 1.3 s). 3000 leaves a
#: starved Sentinel three times that margin and adds 2 s to a promotion.
DOWN_AFTER_MS = 3000
#: A Sentinel answers within this of its start, or it is not coming up.
SENTINEL_START_S = 10.0
#: Ports tried for one Sentinel when the one picked was taken before it could bind it.
SENTINEL_PORT_TRIES = 5


class SentinelCluster:
    """A master, ``replicas`` replicas and ``sentinels`` Sentinels (quorum: a majority)."""

    def __init__(
        self,
        workdir: Path,
        *,
        replicas: int = 2,
        sentinels: int = 3,
        master_name: str = MASTER_NAME,
        password: str | None = None,
        sentinel_password: str | None = None,
        down_after_ms: int = DOWN_AFTER_MS,
        failover_timeout_ms: int = 3000,
        appendonly: bool = True,
        tls: TlsFiles | None = None,
    ) -> None:
        """``tls``: every node and Sentinel speaks TLS only (one CA; no client certificates),
        replication and Sentinel's own connections included."""
        self.workdir = workdir
        self.tls = tls
        self.master_name = master_name
        self.password = password
        self.sentinel_password = sentinel_password
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.quorum = sentinels // 2 + 1
        # a new replica syncs at once (not after Redis' 5 s wait for more replicas)
        quick_sync: tuple[str, ...] = ("--repl-diskless-sync-delay", "0")
        if tls is not None:
            quick_sync += ("--tls-replication", "yes")  # a demoted master replicates too
        first = RedisServer(
            appendonly=appendonly,
            data_dir=self._dir("redis-0"),
            password=password,
            extra_args=quick_sync,
            tls=tls,
        )
        self.servers = [first] + [
            RedisServer(
                appendonly=appendonly,
                data_dir=self._dir(f"redis-{n}"),
                password=password,
                extra_args=(*quick_sync, "--replicaof", "127.0.0.1", str(first.port)),
                tls=tls,
            )
            for n in range(1, replicas + 1)
        ]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self._sentinels: list[subprocess.Popen[bytes]] = []
        self._clients: dict[int, redis.Redis] = {}  # by port

    def _dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- addresses ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """kombu's and cancelq's ``sentinel://`` URL (the data password in the first part)."""
        auth = f":{self.password}@" if self.password else ""
        parts = [f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports]
        parts[0] = f"sentinel://{auth}127.0.0.1:{self.sentinel_ports[0]}/0"
        return ";".join(parts)

    @property
    def options(self) -> SentinelOptions:
        if self.tls is None:
            return SentinelOptions(self.master_name, password=self.sentinel_password)
        return SentinelOptions(
            self.master_name,
            password=self.sentinel_password,
            tls=True,
            ca_file=str(self.tls.ca_cert),
        )

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        """A client of Sentinel ``index`` (one per Sentinel, closed with the cluster)."""
        port = self.sentinel_ports[index]
        if port not in self._clients:
            tls: dict[str, Any] = {}
            if self.tls is not None:
                tls = {"ssl": True, "ssl_ca_certs": str(self.tls.ca_cert)}
            self._clients[port] = redis.Redis(
                "127.0.0.1",
                port,
                password=self.sentinel_password,
                socket_timeout=2,
                decode_responses=True,
                **tls,
            )
        return self._clients[port]

    def master_port(self, index: int = 0) -> int | None:
        """The master's port as Sentinel ``index`` names it (None: it does not answer)."""
        try:
            reply = _command(
                self.sentinel_client(index), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name
            )
        except redis.RedisError:
            return None
        return int(reply[1]) if reply else None

    def master(self) -> RedisServer:
        """The server every answering Sentinel names master."""
        ports = {p for p in (self.master_port(i) for i in range(len(self.sentinel_ports))) if p}
        if len(ports) != 1:
            raise RuntimeError(f"the Sentinels disagree on the master: {sorted(ports)}")
        (port,) = ports
        return self.server(port)

    def config_epoch(self) -> int:
        """The highest configuration epoch the answering Sentinels hold for the master: one
        more per failover (0 before the first)."""
        epochs = []
        for index in range(len(self.sentinel_ports)):
            try:
                state = _command(
                    self.sentinel_client(index), "SENTINEL", "MASTER", self.master_name
                )
            except redis.RedisError:
                continue
            epochs.append(int(str(_fields(state)["config-epoch"])))
        if not epochs:
            raise RuntimeError("no Sentinel answers")
        return max(epochs)

    def stall_sentinel(self, index: int, seconds: float) -> None:
        """Sentinel ``index`` stopped (SIGSTOP) for ``seconds``, as a starved process is."""
        process = self._sentinels[index]
        process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            process.send_signal(signal.SIGCONT)

    def server(self, port: int) -> RedisServer:
        (found,) = [s for s in self.servers if s.port == port]
        return found

    def data_client(self, server: RedisServer) -> redis.Redis:
        """A client of that server (one per server, closed with the cluster)."""
        if server.port not in self._clients:
            self._clients[server.port] = redis.Redis.from_url(
                server.url, socket_timeout=2, decode_responses=True
            )
        return self._clients[server.port]

    # -- life -----------------------------------------------------------------------------------

    def start(self, timeout_s: float = 30.0) -> Self:
        try:
            for server in self.servers:
                server.start()
            for index in range(len(self.sentinel_ports)):
                self._sentinels.append(self._start_answering_sentinel(index))
            self.wait_ready(timeout_s)
        except BaseException:
            self.close()
            raise
        return self

    def _start_answering_sentinel(self, index: int) -> subprocess.Popen[bytes]:
        """Sentinel ``index``, once it answers; on a port taken meanwhile, on another one."""
        for _ in range(SENTINEL_PORT_TRIES):
            process = self._start_sentinel(index, self.sentinel_ports[index])
            deadline = time.monotonic() + SENTINEL_START_S
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    if self.sentinel_client(index).ping():
                        return process
                except redis.RedisError:
                    time.sleep(0.02)
            if process.poll() is None:
                end_process(process, signal.SIGKILL, timeout_s=5)
                raise TimeoutError(f"Sentinel {index} did not answer in {SENTINEL_START_S}s")
            log = self._sentinel_log(index)
            if "Address already in use" not in log:
                raise RuntimeError(f"Sentinel {index} exited at start: {log[-2000:]}")
            self._clients.pop(self.sentinel_ports[index], None)
            self.sentinel_ports[index] = free_port()
        raise RuntimeError(f"Sentinel {index}: every port tried was taken")

    def _sentinel_log(self, index: int) -> str:
        try:
            return (self._dir(f"sentinel-{index}") / "sentinel.log").read_text(errors="replace")
        except OSError:
            return ""

    def _start_sentinel(self, index: int, port: int) -> subprocess.Popen[bytes]:
        directory = self._dir(f"sentinel-{index}")
        master = self.servers[0]
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f"dir {directory}",
            f"logfile {directory / 'sentinel.log'}",
            f"sentinel monitor {self.master_name} 127.0.0.1 {master.port} {self.quorum}",
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}",
            f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {self.master_name} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {self.master_name} {self.password}")
        if self.sentinel_password:
            lines.append(f"requirepass {self.sentinel_password}")
        if self.tls is not None:
            lines[0] = "port 0"
            lines += [
                f"tls-port {port}",
                f"tls-cert-file {self.tls.cert}",
                f"tls-key-file {self.tls.key}",
                f"tls-ca-cert-file {self.tls.ca_cert}",
                "tls-auth-clients no",
                "tls-replication yes",  # Sentinel's connections to the nodes and its peers
            ]
        conf = directory / "sentinel.conf"
        conf.write_text("\n".join(lines) + "\n")  # Sentinel rewrites it: its own copy
        return subprocess.Popen(
            [redis_server_binary(tls=self.tls is not None), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float) -> None:
        """Until every replica is in sync with the master and every Sentinel sees the master,
        every replica and every other Sentinel."""
        deadline = time.monotonic() + timeout_s
        want = {
            "num-slaves": len(self.servers) - 1,
            "num-other-sentinels": len(self._sentinels) - 1,
        }
        while time.monotonic() < deadline:
            for index, process in enumerate(self._sentinels):
                if process.poll() is not None:
                    log = self._sentinel_log(index)[-2000:]
                    raise RuntimeError(f"Sentinel {index} exited: {log}")
            if self.replicas_online() == len(self.servers) - 1 and all(
                self._sees(index, want) for index in range(len(self._sentinels))
            ):
                return
            time.sleep(0.1)
        raise TimeoutError(f"the Sentinels did not see the whole cluster in {timeout_s}s")

    def _sees(self, index: int, want: dict[str, int]) -> bool:
        try:
            state = _command(self.sentinel_client(index), "SENTINEL", "MASTER", self.master_name)
        except redis.RedisError:
            return False
        fields = _fields(state)
        return all(int(str(fields.get(name, -1))) >= count for name, count in want.items())

    def replicas_online(self) -> int:
        """Replicas the master reports in sync (``state=online``)."""
        try:
            info = self.data_client(self.master()).info("replication")
        except (redis.RedisError, RuntimeError):
            return 0
        return sum(
            1
            for name, value in info.items()
            if name.startswith("slave")
            and isinstance(value, dict)
            and value.get("state") == "online"
        )

    def failover(self, timeout_s: float = 30.0) -> None:
        """A planned failover (``SENTINEL FAILOVER``), retried while one is still settling."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                _command(self.sentinel_client(), "SENTINEL", "FAILOVER", self.master_name)
                return
            except redis.ResponseError as exc:
                if "INPROG" not in str(exc) and "NOGOODSLAVE" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def wait_failover(self, old: RedisServer, timeout_s: float = 30.0) -> RedisServer:
        """The new master, once every answering Sentinel names one other than ``old`` and it
        answers as master."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ports = {self.master_port(i) for i in range(len(self._sentinels))} - {None}
            if len(ports) == 1 and old.port not in ports:
                (port,) = ports
                server = self.server(int(port))  # type: ignore[arg-type]
                try:
                    role = _command(self.data_client(server), "ROLE")
                except redis.RedisError:
                    role = None
                if role and role[0] == "master":
                    return server
            time.sleep(0.02)
        raise TimeoutError(f"no failover away from port {old.port} in {timeout_s}s")

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for process in self._sentinels:
            end_process(process, signal.SIGTERM, timeout_s=10)
        self._sentinels.clear()
        for server in self.servers:
            server.thaw()  # a frozen server cannot be stopped
            server.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _command(client: redis.Redis, *args: str) -> Any:
    """One raw command (Sentinel's and ROLE have no typed method in redis-py)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _fields(state: Any) -> dict[str, object]:
    """``SENTINEL MASTER``'s reply as a dict (RESP2 answers a flat list of names and values)."""
    if isinstance(state, list):
        return dict(zip(state[::2], state[1::2], strict=True))
    fields: dict[str, object] = state
    return fields


def roles(cluster: SentinelCluster, servers: Sequence[RedisServer]) -> list[str]:
    """Each server's ROLE (``master``, ``slave``, or ``down``)."""
    found = []
    for server in servers:
        try:
            found.append(str(_command(cluster.data_client(server), "ROLE")[0]))
        except redis.RedisError:
            found.append("down")
    return found
