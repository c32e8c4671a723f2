"""PNG charts of a benchmark run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

_OURS = "#1f6feb"
_THEIRS = "#8c959f"
_FLOOR = "#2da44e"


def _color(key: str) -> str:
    if key.startswith("typed") or key == "passthrough":
        return _OURS
    if key in ("direct", "raw"):
        return _FLOOR
    return _THEIRS


def throughput_chart(result: dict[str, Any], path: Path) -> None:
    rows = result["throughput"]["subjects"]
    levels = result["throughput"]["concurrency"]
    keys = [k for k, row in rows.items() if row.get("runs")]
    fig, ax = plt.subplots(figsize=(10, 5.2))
    width = 0.8 / max(1, len(levels))
    for j, c in enumerate(levels):
        values = [rows[k]["runs"].get(str(c), {}).get("tokens_per_s", 0) or 0 for k in keys]
        xs = [i + (j - (len(levels) - 1) / 2) * width for i in range(len(keys))]
        bars = ax.bar(xs, values, width, label=f"{c} stream{'s' if c > 1 else ''}")
        for bar, key in zip(bars, keys, strict=True):
            bar.set_color(_color(key))
            bar.set_alpha(0.45 + 0.55 * (j + 1) / len(levels))
    ax.set_yscale("log")
    ax.set_ylabel("tokens/s reaching the client (log scale)")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([rows[k]["label"] for k in keys], rotation=20, ha="right", fontsize=8)
    ax.set_title("Throughput by concurrency (bars per subject: 1, 10, 100 streams)")
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu_chart(result: dict[str, Any], path: Path) -> None:
    rows = result["throughput"]["subjects"]
    levels = result["throughput"]["concurrency"]
    concurrency = 10 if 10 in levels else levels[-1]
    items = [
        (row["label"], run["relay_cpu_s_per_1k"], key)
        for key, row in rows.items()
        if (run := row.get("runs", {}).get(str(concurrency))) and run.get("relay_cpu_s_per_1k")
    ]
    items.sort(key=lambda item: item[1])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bars = ax.barh([i[0] for i in items], [i[1] * 1000 for i in items])
    for bar, item in zip(bars, items, strict=True):
        bar.set_color(_color(item[2]))
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {item[1] * 1000:.1f}",
            va="center",
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_xlabel(f"relay CPU ms per 1,000 tokens at {concurrency} streams (log scale)")
    ax.set_title("What relaying costs the relay process")
    ax.grid(axis="x", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def wire_chart(result: dict[str, Any], path: Path) -> None:
    wire = result["wire"]
    paces = list(wire["paces"])
    keys = list(wire["subjects"])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(1, len(paces))
    for j, pace in enumerate(paces):
        values = [wire["subjects"][k]["runs"].get(pace, {}).get("amplification") or 0 for k in keys]
        xs = [i + (j - (len(paces) - 1) / 2) * width for i in range(len(keys))]
        bars = ax.bar(xs, values, width, label=pace)
        for bar, value in zip(bars, values, strict=True):
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                bar.get_height(),
                f"{value:g}x",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_yscale("log")
    ax.set_ylabel("wire bytes / final text bytes (log scale)")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(
        [wire["subjects"][k]["label"] for k in keys], rotation=15, ha="right", fontsize=8
    )
    ax.set_title(f"Bytes on the wire for one {wire['tokens']:,}-token answer")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency_chart(result: dict[str, Any], path: Path) -> None:
    lat = result["latency"]
    rows = [(k, r) for k, r in lat["subjects"].items() if r.get("itl_ms_p50") is not None]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = range(len(rows))
    p50 = [r["itl_ms_p50"] for _, r in rows]
    p99 = [r["itl_ms_p99"] for _, r in rows]
    ax.bar([x - 0.2 for x in xs], p50, 0.4, label="p50", color=_FLOOR)
    ax.bar([x + 0.2 for x in xs], p99, 0.4, label="p99", color=_OURS)
    ax.axhline(1000 / lat["tps"], color="black", lw=0.8, ls="--", label="pacing interval")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r["label"] for _, r in rows], rotation=15, ha="right", fontsize=8)
    ax.set_ylabel("gap between tokens at the client, ms")
    ax.set_title(f"Inter-token gaps, {lat['streams']} streams x {lat['tps']:g} tok/s")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(result: dict[str, Any], directory: Path) -> list[str]:
    """Draw every chart the result has data for; returns the file names."""
    made = []
    for name, draw, needs in (
        ("throughput.png", throughput_chart, "throughput"),
        ("relay_cpu.png", cpu_chart, "throughput"),
        ("wire_bytes.png", wire_chart, "wire"),
        ("latency.png", latency_chart, "latency"),
    ):
        if result.get(needs):
            draw(result, directory / name)
            made.append(name)
    return made
