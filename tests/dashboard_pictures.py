"""The Grafana dashboards drawn from a real Prometheus's query results (Grafana itself cannot be
installed here): one PNG per dashboard, its panels in Grafana's layout, each query's series as
Prometheus returns them over a time range. The stack test draws them from the cluster it loads;
with `VOXBUS_DASHBOARD_PICTURES=docs/images` it writes them where the README shows them."""

import asyncio
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from voxbus.devinfra.dashboards import COLUMNS, Dashboard, Panel

# Grafana's unit → (factor, axis label)
UNITS: Mapping[str, tuple[float, str]] = {
    "s": (1000.0, "ms"),
    "Bps": (1 / 1024, "KiB/s"),
    "bytes": (1 / 1024**2, "MiB"),
    "percentunit": (100.0, "%"),
    "reqps": (1.0, "per second"),
    "short": (1.0, ""),
}
MAX_SERIES = 8  # drawn per panel, the busiest


@dataclass(frozen=True)
class Window:
    """A time range (Unix seconds) and the step between its points."""

    start: float
    end: float
    step: float = 2.0


@dataclass(frozen=True)
class Series:
    expr: str  # the query that returned it
    label: str
    times: list[float]  # seconds since the range's start
    values: list[float]


async def query_range(
    http: aiohttp.ClientSession, prometheus: str, expr: str, window: Window
) -> list[dict[str, Any]]:
    params = {
        "query": expr,
        "start": f"{window.start:.3f}",
        "end": f"{window.end:.3f}",
        "step": f"{window.step:g}",
    }
    async with http.get(f"{prometheus}/api/v1/query_range", params=params) as response:
        body = await response.json()
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def legend(template: str, labels: Mapping[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), template).strip() or "value"


async def panel_series(
    http: aiohttp.ClientSession, prometheus: str, panel: Panel, window: Window
) -> list[Series]:
    """Every series the panel's queries return, with finite values only."""
    drawn = []
    for query in panel.queries:
        for result in await query_range(http, prometheus, query.expr, window):
            points = [
                (float(t) - window.start, float(v)) for t, v in result["values"] if math.isfinite(float(v))
            ]
            if points:
                times, values = zip(*points, strict=True)
                label = legend(query.legend, result["metric"])
                drawn.append(Series(query.expr, label, list(times), list(values)))
    return drawn


Panels = list[tuple[Panel, list[Series]]]


async def fetch(http: aiohttp.ClientSession, prometheus: str, dashboard: Dashboard, window: Window) -> Panels:
    """Every panel of `dashboard` with the series its queries return over `window`."""
    return [(panel, await panel_series(http, prometheus, panel, window)) for panel in dashboard.panels]


def peaks(panels: Panels) -> dict[str, float | None]:
    """Per panel title, the largest value its series reached (None: no data)."""
    return {
        panel.title: max((abs(v) for one in series for v in one.values), default=None)
        for panel, series in panels
    }


async def draw(dashboard: Dashboard, panels: Panels, window: Window, path: Path, *, load: str) -> None:
    """`dashboard`'s fetched `panels` as a PNG at `path`, in Grafana's layout; `load` says what
    the cluster was doing."""
    title = f"{dashboard.title} (drawn from Prometheus query results: voxbus stack under {load})"
    await asyncio.to_thread(_render, title, panels, window, path)


def _render(title: str, panels: Panels, window: Window, path: Path) -> None:
    rows = math.ceil(len(panels) / COLUMNS)
    figure, axes = plt.subplots(rows, COLUMNS, figsize=(7 * COLUMNS, 3.2 * rows), squeeze=False)
    for index, (panel, series) in enumerate(panels):
        ax = axes[index // COLUMNS][index % COLUMNS]
        factor, unit = UNITS[panel.unit]
        busiest = sorted(series, key=lambda one: max(abs(v) for v in one.values), reverse=True)
        for one in busiest[:MAX_SERIES]:
            ax.plot(one.times, [v * factor for v in one.values], label=one.label, linewidth=1.4)
        if len(busiest) > MAX_SERIES:
            quieter = f"and {len(busiest) - MAX_SERIES} quieter series"
            ax.text(0.99, 0.02, quieter, transform=ax.transAxes, ha="right", fontsize=6)
        ax.set_xlim(0, window.end - window.start)
        ax.set_title(panel.title, fontsize=10, loc="left")
        ax.set_ylabel(unit, fontsize=8)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=6, loc="upper left", framealpha=0.6)
    for index in range(len(panels), rows * COLUMNS):
        axes[index // COLUMNS][index % COLUMNS].set_visible(False)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
