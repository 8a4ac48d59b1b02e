"""Render the dashboard's time-series panels to PNG files from a Prometheus server's data.

For reports and reviews where no Grafana runs: every ``timeseries`` panel of a dashboard JSON
becomes one PNG, each target queried with ``/api/v1/query_range`` and each series drawn as one
line labelled by the target's ``legendFormat``. Usage::

    python -m monitoring.render_panels --prometheus http://127.0.0.1:9090 --out panels/
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.dates as mdates  # after matplotlib.use()
import matplotlib.pyplot as plt
import numpy as np

from monitoring.promserver import query_range
from monitoring.queries import DASHBOARDS_DIR, GRAFANA_DEFAULTS, to_promql

DEFAULT_DASHBOARD = DASHBOARDS_DIR / "cancelq.json"
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_UNITS = {"s": "seconds", "reqps": "per second", "percentunit": "ratio", "short": "", "none": ""}


@dataclass(frozen=True)
class RenderedPanel:
    title: str
    path: Path
    series: int  # lines drawn; 0 means the panel had no data in the window


def render_panels(
    prometheus_url: str,
    out_dir: Path,
    *,
    dashboard: Path = DEFAULT_DASHBOARD,
    window_s: float = 3600.0,
    step_s: float | None = None,
    end: float | None = None,
    variables: Mapping[str, str] = GRAFANA_DEFAULTS,
    titles: Sequence[str] | None = None,
) -> list[RenderedPanel]:
    """Render every time-series panel of ``dashboard`` (or those titled ``titles``, in that
    order) over the ``window_s`` seconds up to ``end`` (default: now)."""
    base_url = prometheus_url.rstrip("/")
    end = time.time() if end is None else end
    step = step_s if step_s is not None else max(window_s / 300, 1.0)
    out_dir.mkdir(parents=True, exist_ok=True)
    panels = [
        p for p in _all_panels(json.loads(dashboard.read_text())) if p["type"] == "timeseries"
    ]
    if titles is not None:
        by_title = {p["title"]: p for p in panels}
        unknown = [t for t in titles if t not in by_title]
        if unknown:
            raise ValueError(f"no time-series panel titled {unknown} in {dashboard.name}")
        panels = [by_title[t] for t in titles]
    rendered = []
    for panel in panels:
        path = out_dir / f"{_slug(panel['title'])}.png"
        series = _render(base_url, panel, path, (end - window_s, end, step), variables)
        rendered.append(RenderedPanel(panel["title"], path, series))
    return rendered


def _all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def _render(
    base_url: str,
    panel: dict[str, Any],
    path: Path,
    window: tuple[float, float, float],
    variables: Mapping[str, str],
) -> int:
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    try:
        lines = 0
        for target in panel.get("targets", []):
            expr = to_promql(target["expr"], variables)
            for series in query_range(base_url, expr, *window):
                times = np.array(
                    [round(float(t) * 1000) for t, _ in series["values"]],
                    dtype="datetime64[ms]",
                )
                values = [float(v) for _, v in series["values"]]
                label = _legend(target.get("legendFormat", ""), series["metric"])
                ax.plot(times, values, label=label, linewidth=1.2)
                lines += 1
        _decorate(ax, panel, lines)
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return lines


def _decorate(ax: Any, panel: dict[str, Any], lines: int) -> None:
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    unit = defaults.get("unit", "")
    ax.set_title(panel["title"], fontsize="large", fontweight="bold")
    ax.set_ylabel(_UNITS.get(unit, unit))
    ax.set_xlabel("time (UTC)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))  # type: ignore[no-untyped-call]
    _scale(ax, defaults.get("custom", {}).get("scaleDistribution", {}))
    ax.grid(visible=True, alpha=0.3)
    if lines:  # beside the plot, never over the lines
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    else:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")


def _scale(ax: Any, distribution: Mapping[str, Any]) -> None:
    """Grafana's axis scale: linear, log, or symlog (linear near 0, for series with zeros)."""
    kind = distribution.get("type", "linear")
    base = distribution.get("log", 10)
    if kind == "log":
        ax.set_yscale("log", base=base)
    elif kind == "symlog":
        ax.set_yscale("symlog", base=base, linthresh=distribution.get("linearThreshold", 1))


def _legend(fmt: str, labels: Mapping[str, str]) -> str:
    if not fmt:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
    return _LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), fmt)


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def main() -> None:
    parser = argparse.ArgumentParser(description="Render dashboard panels to PNG files.")
    parser.add_argument("--prometheus", required=True, help="base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--dashboard", type=Path, default=DEFAULT_DASHBOARD)
    parser.add_argument("--window", type=float, default=3600.0, help="seconds up to now")
    args = parser.parse_args()
    for panel in render_panels(
        args.prometheus, args.out, dashboard=args.dashboard, window_s=args.window
    ):
        print(f"{panel.path}  ({panel.series} series)")


if __name__ == "__main__":
    main()
