"""The results table (rich, on the terminal) and ``bench/RESULTS.md`` with the machine."""

from __future__ import annotations

import datetime as dt
import math
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

import celery
import redis as redis_py
from rich.console import Console
from rich.table import Table

from bench.measure import Figure, Results

HEADERS = (
    "group",
    "figure",
    "value (median)",
    "spread",
    "baseline (same run)",
    "ratio",
    "target",
    "met?",
    "note",
)


def _num(fmt: str, v: float) -> str:
    return "—" if math.isnan(v) else fmt.format(v)


def row(f: Figure) -> list[str]:
    base = ""
    if f.baseline is not None:
        base = f"{f.baseline_name}: {_num(f.fmt, f.baseline.median)}"
        if f.baseline.n > 1:
            base += f" [{f.baseline.text(f.fmt)}]"
    ratio = f.ratio
    met = "—" if f.met is None else ("yes" if f.met else "NO")
    return [
        f.group,
        f.name,
        f"{_num(f.fmt, f.value.median)} {f.unit}",
        f.value.text(f.fmt),
        base,
        "" if ratio is None or math.isnan(ratio) else f"{ratio:.2f}x",
        f.target,
        met,
        f.note,
    ]


def machine(redis_version: str) -> list[str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    ).stdout.strip()
    return [
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"machine: {platform.node()}, {len(__import__('os').sched_getaffinity(0))} cores, {cpu}",
        f"Python {platform.python_version()}, Celery {celery.__version__}, "
        f"redis-server {redis_version}, redis-py {redis_py.__version__}",
        f"commit: {commit or 'unknown'} (working tree may hold uncommitted changes)",
    ]


def print_table(results: Results, console: Console) -> None:
    table = Table(title="cancelq benchmark", show_lines=False)
    for h in HEADERS:
        table.add_column(h, overflow="fold")
    for f in results.figures:
        table.add_row(*row(f))
    console.print(table)
    for note in results.notes:
        console.print(f"note: {note}")


def write_markdown(
    results: Results, path: Path, command: Sequence[str], about: Sequence[str], elapsed_s: float
) -> None:
    lines = [
        "# cancelq benchmark results",
        "",
        *[f"- {a}" for a in about],
        f"- command: `{' '.join(command)}`",
        f"- wall time: {elapsed_s:.0f} s",
        "",
        "Values are medians; spread is min-max over repeats (n = repeats) or over samples "
        "where stated. Every baseline was measured in the same run.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    for f in results.figures:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in row(f)) + " |")
    for title, body in results.sections.items():
        lines += ["", f"## {title}", "", *body]
    if results.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in results.notes]]
    lines += ["", "Plots: `bench/out/*.png` (latency CDF per system, rate per key over time).", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
