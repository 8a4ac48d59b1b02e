"""Run a real, throw-away Prometheus server and query it over its HTTP API.

Used by tests to prove queries against real scrapes: :func:`running_prometheus` starts the
``prometheus`` binary on a free loopback port with a temporary config scraping the given
targets, :func:`wait_for_scrapes` waits until every target has been scraped successfully, and
:func:`evaluate` runs expressions through ``/api/v1/query``, failing on any error or warning.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from monitoring.queries import Query

JOB = "cancelq-worker"


class PrometheusError(RuntimeError):
    """Prometheus could not be started, did not scrape, or refused a query."""


@dataclass(frozen=True)
class ScrapeJob:
    """One more scrape job: its name, its targets (host:port), labels added to every series."""

    name: str
    targets: Sequence[str]
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Prometheus:
    base_url: str
    log_file: Path

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


@contextmanager
def running_prometheus(
    targets: Sequence[str],
    *,
    job: str = JOB,
    labels: Mapping[str, str] | None = None,
    extra_jobs: Sequence[ScrapeJob] = (),
    scrape_interval_s: float = 1.0,
    rule_files: Sequence[Path] = (),
    binary: str = "prometheus",
    start_timeout_s: float = 20.0,
) -> Iterator[Prometheus]:
    """Start Prometheus on 127.0.0.1 scraping ``targets`` (host:port) as ``job`` (with
    ``labels``), and every one of ``extra_jobs``; stop it after."""
    executable = shutil.which(binary)
    if executable is None:
        raise PrometheusError(f"{binary!r} not found on PATH (Debian package: prometheus)")
    with tempfile.TemporaryDirectory(prefix="cancelq-prom-") as tmp:
        workdir = Path(tmp)
        config = workdir / "prometheus.yml"
        jobs = [ScrapeJob(job, targets, labels or {}), *extra_jobs]
        config.write_text(yaml.safe_dump(_config(jobs, scrape_interval_s, rule_files)))
        port = _free_port()
        log_file = workdir / "prometheus.log"
        with log_file.open("wb") as log:
            process = subprocess.Popen(
                [
                    executable,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        server = Prometheus(f"http://127.0.0.1:{port}", log_file)
        try:
            _wait_ready(server, process, start_timeout_s)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _config(
    jobs: Sequence[ScrapeJob],
    interval_s: float,
    rule_files: Sequence[Path],
) -> dict[str, Any]:
    interval = f"{int(interval_s * 1000)}ms"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": job.name,
                "static_configs": [
                    {
                        "targets": list(job.targets),
                        **({"labels": dict(job.labels)} if job.labels else {}),
                    }
                ],
            }
            for job in jobs
        ],
    }


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(server: Prometheus, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PrometheusError(f"prometheus exited with {process.returncode}:\n{server.log()}")
        try:
            with _open(f"{server.base_url}/-/ready", timeout_s=1) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    raise PrometheusError(f"prometheus not ready after {timeout_s} s:\n{server.log()}")


def wait_for_scrapes(
    base_url: str,
    n_targets: int,
    *,
    scrapes: int = 3,
    timeout_s: float = 30.0,
) -> None:
    """Wait until ``n_targets`` targets are up and ``scrapes`` samples of ``up`` exist for each.

    Several samples are needed before ``rate()`` and ``increase()`` return anything.
    """
    expr = f"count_over_time(up[1h]) >= {scrapes} and up == 1"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(query(base_url, expr)) >= n_targets:
            return
        time.sleep(0.25)
    targets = _get(base_url, "/api/v1/targets", {})
    raise PrometheusError(f"targets not scraped {scrapes} times in {timeout_s} s: {targets}")


def wait_for_scrapes_after(
    base_url: str,
    n_targets: int,
    after: float,
    *,
    timeout_s: float = 30.0,
) -> None:
    """Wait until ``n_targets`` targets have been scraped successfully after the Unix time
    ``after`` (so what happened before ``after`` is in Prometheus)."""
    # timestamp() of a plain selector is the scrape's time; of any other expression (`up == 1`)
    # it would be the evaluation time, which passes ``after`` without any new scrape.
    expr = f"timestamp(up) > {after:.3f} and up == 1"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(query(base_url, expr)) >= n_targets:
            return
        time.sleep(0.25)
    raise PrometheusError(f"{n_targets} targets not all scraped after {after} in {timeout_s} s")


def wait_for(base_url: str, expr: str, *, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Wait until ``expr`` returns at least one series; return them."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = query(base_url, expr)
        if found:
            return found
        if time.monotonic() >= deadline:
            raise PrometheusError(f"no result for {expr!r} in {timeout_s} s")
        time.sleep(0.25)


def scraped_metric_names(base_url: str, jobs: Sequence[str]) -> set[str]:
    """Every metric name the targets of ``jobs`` exposed (``up`` and ``scrape_*`` are
    Prometheus' own, not the targets')."""
    selector = "|".join(jobs)
    series = query(base_url, f'group by (__name__) ({{job=~"{selector}"}})')
    names = {str(s["metric"]["__name__"]) for s in series}
    return {n for n in names if n != "up" and not n.startswith("scrape_")}


def query(base_url: str, expr: str) -> list[dict[str, Any]]:
    """Evaluate one instant query; return its result list; raise on any error or warning."""
    data = _get(base_url, "/api/v1/query", {"query": expr})
    result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else [data]
    return result


def query_range(
    base_url: str,
    expr: str,
    start: float,
    end: float,
    step_s: float,
) -> list[dict[str, Any]]:
    """Evaluate a range query; return its matrix (one entry per series)."""
    params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s}"}
    result: list[dict[str, Any]] = _get(base_url, "/api/v1/query_range", params)["result"]
    return result


def evaluate(base_url: str, queries: Sequence[Query]) -> dict[Query, list[dict[str, Any]]]:
    """Evaluate every query; raise one error naming every query Prometheus refused."""
    results: dict[Query, list[dict[str, Any]]] = {}
    errors: list[str] = []
    for q in queries:
        try:
            results[q] = query(base_url, q.expr)
        except PrometheusError as exc:
            errors.append(f"{q.source}: {exc}")
    if errors:
        raise PrometheusError("\n".join(errors))
    return results


def rules(base_url: str) -> list[dict[str, Any]]:
    """Every rule Prometheus has loaded, with its ``health`` and ``lastError``."""
    groups = _get(base_url, "/api/v1/rules", {})["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _get(base_url: str, path: str, params: dict[str, str]) -> Any:
    url = f"{base_url}{path}?{urllib.parse.urlencode(params)}"
    try:
        with _open(url, timeout_s=10) as reply:
            body = json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        raise PrometheusError(f"HTTP {exc.code}: {body.get('error', body)}") from exc
    if body.get("status") != "success":
        raise PrometheusError(f"{body.get('errorType')}: {body.get('error')}")
    if body.get("warnings"):
        raise PrometheusError(f"warnings: {body['warnings']}")
    return body["data"]


def _open(url: str, timeout_s: float) -> Any:
    if not url.startswith(("http://", "https://")):
        raise PrometheusError(f"not an HTTP URL: {url!r}")
    return urllib.request.urlopen(url, timeout=timeout_s)  # noqa: S310 (scheme checked above)
