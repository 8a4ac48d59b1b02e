"""Benchmark: is the simulator ever the bottleneck?

``python -m bench.simulator_bench [--quick]``

* The simulator runs in a subprocess pinned to core 0; the load generator runs here, pinned to
  core 1, with pre-signed keep-alive requests (wide recv_window) written on raw connections so
  the client is not what is measured.
* Throughput: signed ``/v5/order/cancel`` requests served per second (median, min, max over
  several runs), full path: per-IP rule, auth (HMAC), rate limiter, order book, request log.
* Added latency: sequential round trips on one keep-alive connection, simulator vs a bare
  aiohttp server (same core, same reply size), plus the server-side handler time read from the
  request log.
* TCP_NODELAY: the same round trips against a simulator that turns TCP_NODELAY off, with the
  raw client and with ``requests`` (which writes headers and body separately).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
from aiohttp import web

from cancelq.harness.accounts import AccountSpec, write_accounts
from cancelq.simulator.testing import SimulatorProcess

API_KEY = "BENCHKEY"
SECRET = "bench-secret"
UID = 4242
RECV_WINDOW = 3_600_000
TARGET_RPS = 3000.0
TARGET_ADDED_P50_MS = 0.3
SERVER_CORE = 0
CLIENT_CORE = 1


# -- request building -------------------------------------------------------------------------


def signed_cancel(host: str, i: int, ts: int) -> bytes:
    body = json.dumps(
        {"category": "linear", "symbol": "BTCUSDT", "orderLinkId": f"bench-{i}"},
        separators=(",", ":"),
    )
    origin = f"{ts}{API_KEY}{RECV_WINDOW}{body}".encode()
    sign = hmac.new(SECRET.encode(), origin, hashlib.sha256).hexdigest()
    head = (
        f"POST /v5/order/cancel HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/json\r\n"
        f"X-BAPI-API-KEY: {API_KEY}\r\nX-BAPI-TIMESTAMP: {ts}\r\n"
        f"X-BAPI-RECV-WINDOW: {RECV_WINDOW}\r\nX-BAPI-SIGN: {sign}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body.encode()


def plain_get(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


# -- raw keep-alive client --------------------------------------------------------------------


class RawConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def roundtrip(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        at = head.lower().find(b"content-length:")
        length = int(head[at + 15 : head.index(b"\r\n", at)]) if at >= 0 else 0
        await self.reader.readexactly(length)
        return int(head[9:12])

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def _worker(conn: RawConnection, requests_: Sequence[bytes], stop_at: float) -> int:
    done, i, n = 0, 0, len(requests_)
    loop = asyncio.get_running_loop()
    while loop.time() < stop_at:
        status = await conn.roundtrip(requests_[i % n])
        if status != 200:
            raise RuntimeError(f"unexpected HTTP {status}")
        done += 1
        i += 1
    return done


async def throughput(host: str, port: int, reqs: Sequence[bytes], conns: int, secs: float) -> float:
    opened = [await RawConnection.open(host, port) for _ in range(conns)]
    for c in opened:  # warm up
        await c.roundtrip(reqs[0])
    loop = asyncio.get_running_loop()
    started = loop.time()
    counts = await asyncio.gather(
        *(_worker(c, reqs[k::conns], started + secs) for k, c in enumerate(opened))
    )
    elapsed = loop.time() - started
    for c in opened:
        await c.close()
    return sum(counts) / elapsed


async def sequential_rtt(host: str, port: int, reqs: Sequence[bytes], count: int) -> list[float]:
    conn = await RawConnection.open(host, port)
    out: list[float] = []
    for i in range(count + 50):
        t0 = time.perf_counter()
        await conn.roundtrip(reqs[i % len(reqs)])
        if i >= 50:
            out.append((time.perf_counter() - t0) * 1000.0)
    await conn.close()
    return out


def requests_rtt(url: str, body: bytes, headers: dict[str, str], count: int) -> list[float]:
    out: list[float] = []
    with requests.Session() as session:
        for i in range(count + 5):
            t0 = time.perf_counter()
            session.post(url, data=body, headers=headers, timeout=10)
            if i >= 5:
                out.append((time.perf_counter() - t0) * 1000.0)
    return out


# -- baseline server --------------------------------------------------------------------------


def run_baseline_server() -> int:
    """A bare aiohttp server with a reply the size of the simulator's (for the RTT baseline)."""
    reply = json.dumps(
        {
            "retCode": 170213,
            "retMsg": "Order does not exist.",
            "result": {},
            "retExtInfo": {},
            "time": 0,
        }
    ).encode()

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=reply, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(f"simulator listening on http://127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    return 0


class BaselineProcess(SimulatorProcess):
    def __init__(self) -> None:
        super().__init__()
        self.args = [sys.executable, "-m", "bench.simulator_bench", "--baseline-server"]

    def _wait_healthy(self) -> None:
        return


# -- orchestration ----------------------------------------------------------------------------


def pin(pid: int, core: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        os.sched_setaffinity(pid, {core})


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


@dataclass
class Plan:
    runs: int
    seconds: float
    conns: int
    rtt_count: int


def start_sim(accounts: Path, nodelay: bool = True) -> SimulatorProcess:
    extra = [
        "--rate-limit",
        "order/cancel=100000000",
        "--ip-limit",
        "100000000",
        "--record-size",
        "500000",
        "--log-level",
        "WARNING",
    ]
    if not nodelay:
        extra.append("--no-tcp-nodelay")
    sim = SimulatorProcess(accounts_file=accounts, extra_args=extra).start()
    assert sim.proc is not None
    pin(sim.proc.pid, SERVER_CORE)
    return sim


def _place_orders(sim: SimulatorProcess, n: int) -> None:
    sim.admin.place_orders(
        [{"orderLinkId": f"bench-{i}"} for i in range(n)],
        category="linear",
        symbol="BTCUSDT",
        price="1",
        qty="1",
        uid=UID,
    )


def handler_times(sim: SimulatorProcess, since_ms: float) -> list[float]:
    recs = sim.admin.records(endpoint="order/cancel", since_ms=since_ms, limit=20000)
    return [r["handler_us"] / 1000.0 for r in recs]


def measure(plan: Plan, accounts: Path) -> dict[str, object]:
    host = "127.0.0.1"
    ts = int(time.time() * 1000)
    results: dict[str, object] = {}
    sim = start_sim(accounts)
    try:
        _place_orders(sim, 1000)
        reqs = [signed_cancel(host, i, ts) for i in range(2000)]
        rates = [
            asyncio.run(throughput(host, sim.port, reqs, plan.conns, plan.seconds))
            for _ in range(plan.runs)
        ]
        results["rps"] = rates
        since = time.time() * 1000
        results["sim_rtt"] = asyncio.run(sequential_rtt(host, sim.port, reqs, plan.rtt_count))
        results["handler"] = handler_times(sim, since)
        body = reqs[0].split(b"\r\n\r\n", 1)[1]
        results["sim_requests_rtt"] = requests_rtt(
            f"{sim.base_url}/v5/order/cancel", body, _headers(reqs[0]), plan.rtt_count // 4
        )
    finally:
        sim.stop()
    base = BaselineProcess().start()
    try:
        assert base.proc is not None
        pin(base.proc.pid, SERVER_CORE)
        get = [plain_get(host, "/x")]
        results["base_rtt"] = asyncio.run(sequential_rtt(host, base.port, get, plan.rtt_count))
    finally:
        base.stop()
    nagle = start_sim(accounts, nodelay=False)
    try:
        results["nagle_rtt"] = asyncio.run(
            sequential_rtt(host, nagle.port, reqs, plan.rtt_count // 4)
        )
        body = reqs[0].split(b"\r\n\r\n", 1)[1]
        results["nagle_requests_rtt"] = requests_rtt(
            f"{nagle.base_url}/v5/order/cancel", body, _headers(reqs[0]), 40
        )
    finally:
        nagle.stop()
    return results


def _headers(raw: bytes) -> dict[str, str]:
    head = raw.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]
    pairs = (line.split(": ", 1) for line in head)
    return {k: v for k, v in pairs if k.startswith("X-BAPI") or k == "Content-Type"}


def report(r: dict[str, object], plan: Plan) -> str:
    rps = list(r["rps"])  # type: ignore[call-overload]
    sim_rtt = list(r["sim_rtt"])  # type: ignore[call-overload]
    base_rtt = list(r["base_rtt"])  # type: ignore[call-overload]
    handler = list(r["handler"])  # type: ignore[call-overload]
    req_rtt = list(r["sim_requests_rtt"])  # type: ignore[call-overload]
    nagle = list(r["nagle_rtt"])  # type: ignore[call-overload]
    nagle_req = list(r["nagle_requests_rtt"])  # type: ignore[call-overload]
    median_rps = statistics.median(rps)
    added = pct(sim_rtt, 0.5) - pct(base_rtt, 0.5)
    rows = [
        (
            "signed cancels/s, one core (median)",
            f"{median_rps:,.0f}",
            f"min {min(rps):,.0f} max {max(rps):,.0f} over {len(rps)} runs",
            f"{median_rps / TARGET_RPS:.2f}x of >= {TARGET_RPS:,.0f}/s",
        ),
        (
            "added latency p50 (sim - bare aiohttp)",
            f"{added:.3f} ms",
            f"sim p50 {pct(sim_rtt, 0.5):.3f} p99 {pct(sim_rtt, 0.99):.3f}; "
            f"bare p50 {pct(base_rtt, 0.5):.3f} p99 {pct(base_rtt, 0.99):.3f}",
            f"{added / TARGET_ADDED_P50_MS:.2f}x of < {TARGET_ADDED_P50_MS} ms",
        ),
        (
            "server handler time",
            f"p50 {pct(handler, 0.5):.3f} ms",
            f"p99 {pct(handler, 0.99):.3f} ms (n={len(handler)})",
            "",
        ),
        (
            "RTT, requests client, NODELAY on",
            f"p50 {pct(req_rtt, 0.5):.3f} ms",
            f"p99 {pct(req_rtt, 0.99):.3f} ms",
            "",
        ),
        (
            "RTT, raw client, NODELAY off",
            f"p50 {pct(nagle, 0.5):.3f} ms",
            f"p99 {pct(nagle, 0.99):.3f} ms",
            "",
        ),
        (
            "RTT, requests client, NODELAY off",
            f"p50 {pct(nagle_req, 0.5):.3f} ms",
            f"p99 {pct(nagle_req, 0.99):.3f} ms",
            "",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"simulator benchmark ({plan.runs} runs x {plan.seconds:.0f}s, {plan.conns} conns)"]
    lines += [f"{a:<{width}}  {b:>14}  {c}  {d}".rstrip() for a, b, c, d in rows]
    ok = median_rps >= TARGET_RPS and added < TARGET_ADDED_P50_MS
    lines.append("targets met" if ok else "TARGETS MISSED")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simulator_bench")
    parser.add_argument("--quick", action="store_true", help="short runs (< 1 minute)")
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.baseline_server:
        return run_baseline_server()
    plan = Plan(3, 3.0, 32, 2000) if args.quick else Plan(5, 10.0, 32, 5000)
    pin(0, CLIENT_CORE)
    with tempfile.TemporaryDirectory() as tmp:
        accounts = write_accounts(
            Path(tmp) / "accounts.toml", [AccountSpec("bench", API_KEY, UID, api_secret=SECRET)]
        )
        results = measure(plan, accounts)
    print(report(results, plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
