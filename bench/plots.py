"""PNG plots: latency CDF per system, and cancels per second per key over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def cdf(series: Mapping[str, Sequence[float]], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=90)
    for name, values in series.items():
        ordered = sorted(values)
        if not ordered:
            continue
        ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
        ax.plot(ordered, ys, label=f"{name} (n={len(ordered)})")
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log)")
    ax.set_ylabel("fraction ≤ x")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def rate_over_time(series: Mapping[str, Sequence[float]], path: Path, limit: float) -> None:
    """``series``: request arrival times (ms) per system; plotted as a 1 s sliding count."""
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=90)
    for name, times in series.items():
        if not times:
            continue
        t0 = min(times)
        xs = sorted((t - t0) / 1000 for t in times)
        counts, lo = [], 0
        for i, x in enumerate(xs):
            while xs[lo] <= x - 1.0:
                lo += 1
            counts.append(i - lo + 1)
        ax.step(xs, counts, where="post", label=name)
    ax.axhline(limit, color="red", linestyle="--", label=f"limit {limit:g}/s")
    ax.set_xlabel("seconds since first request")
    ax.set_ylabel("requests in the last 1 s (simulator log)")
    ax.set_title("rate per key over time (one key limited to 20/s)")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
