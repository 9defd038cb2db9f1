"""One PNG for one or many configurations: throughput of the three measurements, and latency percentiles.

Left: frames per second of engine only, sequential and pipelined, one line per configuration
(the drop from the first point to the last is what the rest of the pipeline costs). Right:
the pipelined run's capture-to-sink latency at p50/p95/p99, one line per configuration.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.sinks import create_partial, partial_path

THROUGHPUT = (("engine only", "engine_fps"), ("sequential", "sequential_fps"), ("pipelined", "e2e_fps"))
LATENCY = (("p50", "p50_ms"), ("p95", "p95_ms"), ("p99", "p99_ms"))


def require_matplotlib() -> None:
    """Fail before any measuring when the plot could not be drawn."""
    import importlib.util

    from pipeline.config import ConfigError

    if importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("--plot needs matplotlib: pip install 'rtpipe[bench]' (or drop --plot)")


def figure(reports: list[dict], labels: list[str], title: str):
    """The matplotlib Figure (two axes, one line per configuration on each)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5.5), layout="constrained")
    fps_ax, lat_ax = fig.subplots(1, 2)
    colours = colormaps["tab10" if len(reports) <= 10 else "tab20"].colors
    for i, (report, label) in enumerate(zip(reports, labels)):
        style = {"color": colours[i % len(colours)], "marker": "osD^v<>"[i % 7], "linestyle": ("-", "--", ":")[i // len(colours) % 3],
                 "label": label}
        fps_ax.plot([name for name, _ in THROUGHPUT], [report[key] for _, key in THROUGHPUT], **style)
        lat = report["latency_ms"]["capture_to_sink"]
        lat_ax.plot([name for name, _ in LATENCY], [lat[key] for _, key in LATENCY], **style)
    fps_ax.set(title="Throughput", xlabel="measurement", ylabel="frames per second")
    lat_ax.set(title="Capture-to-sink latency (pipelined)", xlabel="percentile", ylabel="milliseconds")
    for ax in (fps_ax, lat_ax):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.legend(*fps_ax.get_legend_handles_labels(), loc="outside right upper", fontsize="small", title="configuration")
    fig.suptitle(title, fontsize="medium")
    return fig


def save_plot(reports: list[dict], labels: list[str], path: str | Path, title: str) -> Path:
    """Write the PNG under a partial name, then rename it: a failed run leaves no plot that looks finished."""
    path = Path(path)
    with os.fdopen(create_partial(path), "wb") as f:
        figure(reports, labels, title).savefig(f, format="png", dpi=110)
    partial = partial_path(path)
    os.replace(partial, path)
    return path
