"""The benchmark stack: one private Redis, one simulator, and worker processes on demand.

Everything binds 127.0.0.1. Workers of every system (cancelq and the baselines) read the same
accounts file and consume the same Redis list (``cancelq``), so one producer feeds them all and
one reader reads their outcomes (``cancelq:outcome:<requestId>``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil
import redis

from cancelq.embedded_redis import RedisServer
from cancelq.heartbeat import read_heartbeat
from cancelq.proc import kill_process
from simulator.testing import SimulatorProcess

#: Systems a run can start; each but cancelq is a tiny Celery app in ``bench/baselines``.
SYSTEMS = ("cancelq", "naive", "pybit", "floor", "sleeper")
READY_TIMEOUT_S = 60.0
UNBOUND_LIMIT = 1_000_000


@dataclass(frozen=True)
class Key:
    """One API key: what the worker side and the simulator side both read."""

    alias: str
    api_key: str
    secret: str
    uid: int
    rate_limit_per_s: float = 20.0
    batch_counts_items: bool = True


def make_keys(prefix: str, count: int, uid_base: int, **extra: float | bool) -> list[Key]:
    return [
        Key(
            alias=f"{prefix}{i:04d}",
            api_key=f"{prefix.upper()}KEY{i:06d}",
            secret=f"{prefix}-secret-{i:06d}",
            uid=uid_base + i,
            **extra,  # type: ignore[arg-type]
        )
        for i in range(count)
    ]


def write_accounts(path: Path, keys: Sequence[Key]) -> Path:
    lines: list[str] = []
    for key in keys:
        lines += [
            f"[accounts.{key.alias}]",
            f'api_key = "{key.api_key}"',
            f'api_secret = "{key.secret}"',
            f"uid = {key.uid}",
            f"rate_limit_per_s = {key.rate_limit_per_s}",
            f"batch_counts_items = {'true' if key.batch_counts_items else 'false'}",
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class WorkerSet:
    """N worker processes of one system, started in parallel, stopped together."""

    def __init__(
        self,
        system: str,
        count: int,
        pool_args: Sequence[str],
        *,
        env: Mapping[str, str],
        workdir: Path,
        tag: str,
    ) -> None:
        self.system = system
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ready_files: list[Path] = []
        self.logs: list[Path] = []
        for i in range(count):
            ready = workdir / f"{tag}-{i}.ready"
            ready.unlink(missing_ok=True)
            log = workdir / f"{tag}-{i}.log"
            proc_env = {
                **os.environ,
                **env,
                "CANCELQ_HEALTH_FILE": str(ready),
                "BENCH_READY_FILE": str(ready),
            }
            if system == "cancelq":
                argv = [sys.executable, "-m", "cancelq", "worker", *pool_args]
            else:
                argv = [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    f"bench.baselines.{system}",
                    "worker",
                    "--queues",
                    "cancelq",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "--loglevel",
                    "WARNING",
                    *pool_args,
                ]
            with log.open("ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        argv,
                        env=proc_env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        cwd=str(Path(__file__).resolve().parent.parent),
                    )
                )
            self.ready_files.append(ready)
            self.logs.append(log)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> WorkerSet:
        deadline = time.monotonic() + timeout_s
        pending = list(range(len(self.procs)))
        while pending and time.monotonic() < deadline:
            pending = [i for i in pending if not self._ready(i)]
            for i in pending:
                if self.procs[i].poll() is not None:
                    raise RuntimeError(f"{self.system} worker exited:\n{self.log_tail(i)}")
            time.sleep(0.05)
        if pending:
            raise TimeoutError(f"{self.system} worker not ready:\n{self.log_tail(pending[0])}")
        return self

    def _ready(self, i: int) -> bool:
        if self.system == "cancelq":
            beat = read_heartbeat(self.ready_files[i])
            return beat is not None and beat[1] and beat[0] < 5
        return self.ready_files[i].exists()

    def log_tail(self, i: int, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.logs[i].read_text(errors="replace")[-chars:]
        return ""

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def tree(self) -> list[psutil.Process]:
        """Every process of the set: the worker mains and their pool children."""
        out: list[psutil.Process] = []
        for pid in self.pids:
            with contextlib.suppress(psutil.Error):
                main = psutil.Process(pid)
                out += [main, *main.children(recursive=True)]
        return out

    def cpu_s(self) -> float:
        total = 0.0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total

    def rss_mb(self) -> float:
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total / 2**20

    def stop(self, timeout_s: float = 10.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                kill_process(proc, group=True)

    def __enter__(self) -> WorkerSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Stack:
    """Private Redis + simulator; ``workers(...)`` starts a system's processes."""

    def __init__(self, workdir: Path, keys: Sequence[Key], sim_args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.keys = {k.alias: k for k in keys}
        self.accounts_file = write_accounts(workdir / "accounts.toml", keys)
        self.redis_server = RedisServer()
        self.sim = SimulatorProcess(
            accounts_file=self.accounts_file,
            extra_args=[
                "--ip-limit",
                "1000000000",
                "--record-size",
                "400000",
                "--log-level",
                "ERROR",
                *sim_args,
            ],
        )
        self._sets = 0
        self.redis: redis.Redis = redis.Redis()

    def start(self) -> Stack:
        self.redis_server.start()
        self.redis = redis.Redis.from_url(self.redis_server.url)
        self.sim.start()
        return self

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.redis.close()
        self.sim.stop()
        self.redis_server.close()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            "CANCELQ_REDIS_URL": self.redis_server.url,
            "CANCELQ_BYBIT_BASE_URL": self.sim.base_url,
            "CANCELQ_ACCOUNTS_FILE": str(self.accounts_file),
            "CANCELQ_METRICS_PORT": "0",
            "CANCELQ_CONFIRM_DEADLINE_S": "0",
            "CANCELQ_LOG_LEVEL": "WARNING",
            "CANCELQ_NOT_FOUND_RECHECK_S": "0",
            "CANCELQ_SHUTDOWN_GRACE_S": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
            **overrides,
        }

    def reset(self, *, rate_limits: bool = True, batch_counts_items: bool = True) -> None:
        """Empty Redis, fresh simulator (no orders, records, faults).

        ``rate_limits=False`` disables the simulator's limiter *and* raises its advertised
        limits: it sends ``X-Bapi-Limit`` even when disabled, and cancelq obeys the lower of
        its own and the exchange's limit, so a disabled limiter alone still binds at 20/s.
        """
        self.redis.flushall()
        self.redis.config_resetstat()
        self.sim.admin.reset(faults=True)
        admin = self.sim.admin
        admin.configure_rate_limits(enabled=rate_limits, batch_counts_items=batch_counts_items)
        for endpoint in ("order/cancel", "order/cancel-batch"):
            for category, default in (("spot", 20), ("linear", 10)):
                limit = default if rate_limits else UNBOUND_LIMIT
                admin.set_rate_limit(endpoint, limit, category=category)

    @contextlib.contextmanager
    def workers(
        self, system: str, count: int, pool_args: Sequence[str], **env: str
    ) -> Iterator[WorkerSet]:
        self._sets += 1
        tag = f"{system}-{self._sets}"
        ws = WorkerSet(system, count, pool_args, env=self.env(**env), workdir=self.workdir, tag=tag)
        try:
            yield ws.wait_ready()
        finally:
            ws.stop()
            # leftovers of a bounded run must not leak into the next scenario
            self.redis.flushall()
