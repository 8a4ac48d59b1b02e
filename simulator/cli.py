"""Command line: ``cancelq simulator ARGS`` and ``python -m cancelq.simulator ARGS``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cancelq.simulator import config as defaults
from cancelq.simulator.accounts import AccountError
from cancelq.simulator.config import SimulatorConfig
from cancelq.simulator.faults import DISTRIBUTIONS, FaultSettings
from cancelq.simulator.retcodes import Dialect

ADMIN_ENV_VAR = "SIMULATOR_ADMIN_TOKEN"


def parse_rate_limit(text: str) -> tuple[tuple[str, str], int]:
    """``ENDPOINT[:CATEGORY]=N``, e.g. ``order/cancel:spot=5`` or ``order/cancel=3``."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError("expected ENDPOINT[:CATEGORY]=N")
    endpoint, _, category = key.partition(":")
    try:
        limit = int(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad limit {value!r}") from exc
    return (endpoint.strip(), category.strip() or "*"), limit


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a probability is between 0 and 1")
    return value


def _add_fault_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("faults (all also settable live through the admin API)")
    g.add_argument("--latency-ms", type=float, default=0.0, help="added latency (ms)")
    g.add_argument("--latency-dist", choices=DISTRIBUTIONS, default="fixed")
    g.add_argument("--latency-max-ms", type=float, default=0.0, help="uniform: upper bound")
    g.add_argument("--latency-sigma-ms", type=float, default=0.0, help="normal: std dev (ms)")
    g.add_argument("--latency-sigma", type=float, default=0.5, help="lognormal: sigma of log")
    g.add_argument("--p-10016", type=_probability, default=0.0, help="share of 10016 answers")
    g.add_argument("--p-5xx", type=_probability, default=0.0, help="share of HTTP 500/502/503")
    g.add_argument("--p-429", type=_probability, default=0.0, help="share of HTTP 429")
    g.add_argument("--p-10006", type=_probability, default=0.0, help="share of 10006 answers")
    g.add_argument("--p-reset", type=_probability, default=0.0, help="share of resets")
    g.add_argument("--p-hang", type=_probability, default=0.0, help="share of hung requests")
    g.add_argument("--hang-max-s", type=float, default=defaults.DEFAULT_HANG_MAX_S)
    g.add_argument("--clock-skew-ms", type=int, default=0, help="server clock offset (ms)")
    g.add_argument(
        "--fault-endpoint",
        action="append",
        default=[],
        metavar="ENDPOINT",
        help="limit faults to this endpoint group (repeatable), e.g. order/cancel",
    )
    g.add_argument("--seed", type=int, default=None, help="fault RNG seed")


def _add_limit_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("rate limits")
    g.add_argument(
        "--rate-limit",
        action="append",
        type=parse_rate_limit,
        default=[],
        metavar="ENDPOINT[:CATEGORY]=N",
        help="override a per-UID limit (requests/s), e.g. order/cancel:linear=5 (repeatable)",
    )
    g.add_argument("--no-rate-limits", action="store_true", help="never answer 10006 or 403")
    g.add_argument(
        "--batch-per-request",
        action="store_true",
        help="cancel-batch spends one unit per request instead of one per item",
    )
    g.add_argument("--ip-limit", type=int, default=defaults.DEFAULT_IP_LIMIT)
    g.add_argument("--ip-window-ms", type=int, default=defaults.DEFAULT_IP_WINDOW_MS)
    g.add_argument("--ip-ban-ms", type=int, default=defaults.DEFAULT_IP_BAN_MS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cancelq simulator", description="Bybit V5 simulator")
    p.add_argument("--host", default=defaults.DEFAULT_HOST)
    p.add_argument(
        "--port", type=int, default=defaults.DEFAULT_PORT, help="0 = a free port (printed)"
    )
    p.add_argument("--accounts", type=Path, default=None, help="accounts TOML file")
    p.add_argument("--dialect", choices=[d.value for d in Dialect], default="v5")
    p.add_argument(
        "--admin-token",
        default=os.environ.get(ADMIN_ENV_VAR),
        help=f"token non-loopback admin clients must send (env {ADMIN_ENV_VAR})",
    )
    p.add_argument("--record-size", type=int, default=defaults.DEFAULT_RECORD_SIZE)
    p.add_argument("--no-tcp-nodelay", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tls-cert", type=Path, default=None, help="serve HTTPS with this PEM cert")
    p.add_argument("--tls-key", type=Path, default=None, help="the certificate's PEM key")
    p.add_argument("--log-level", default="WARNING")
    _add_fault_flags(p)
    _add_limit_flags(p)
    return p


def _faults(ns: argparse.Namespace) -> FaultSettings:
    return FaultSettings(
        latency_ms=ns.latency_ms,
        latency_dist=ns.latency_dist,
        latency_max_ms=ns.latency_max_ms,
        latency_sigma_ms=ns.latency_sigma_ms,
        latency_sigma=ns.latency_sigma,
        p_reset=ns.p_reset,
        p_hang=ns.p_hang,
        p_http_5xx=ns.p_5xx,
        p_http_429=ns.p_429,
        p_10016=ns.p_10016,
        p_10006=ns.p_10006,
        clock_skew_ms=ns.clock_skew_ms,
        endpoints=tuple(ns.fault_endpoint),
        seed=ns.seed,
    )


def config_from_args(argv: Sequence[str] | None = None) -> SimulatorConfig:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if (ns.tls_cert is None) != (ns.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    return SimulatorConfig(
        host=ns.host,
        port=ns.port,
        accounts_file=ns.accounts,
        dialect=Dialect(ns.dialect),
        admin_token=ns.admin_token or None,
        record_size=ns.record_size,
        ip_limit=ns.ip_limit,
        ip_window_ms=ns.ip_window_ms,
        ip_ban_ms=ns.ip_ban_ms,
        rate_limits=dict(ns.rate_limit),
        batch_counts_items=not ns.batch_per_request,
        rate_limits_enabled=not ns.no_rate_limits,
        faults=_faults(ns),
        hang_max_s=ns.hang_max_s,
        tcp_nodelay=not ns.no_tcp_nodelay,
        tls_cert=ns.tls_cert,
        tls_key=ns.tls_key,
        log_level=ns.log_level.upper(),
    )


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run until SIGINT/SIGTERM; exit status."""
    from cancelq.simulator.server import run

    config = config_from_args(argv)
    logging.basicConfig(level=config.log_level, stream=sys.stderr)
    try:
        return run(config)
    except AccountError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"simulator: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
