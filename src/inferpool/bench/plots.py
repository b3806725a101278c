"""PNG plots with matplotlib's Agg backend: latency CDFs, latency vs rate, per-replica load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from inferpool.bench.compare import ContenderRun
from inferpool.bench.report import SweepPoint
from inferpool.bench.stats import Summary

DPI = 90  # small PNGs: they are committed with the docs


def plot_cdfs(runs: list[ContenderRun], path: Path, title: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in runs:
        ok = [r for r in run.results if r.ok]
        for ax, values in (
            (axes[0], [r.ttft for r in ok if r.ttft is not None]),
            (axes[1], [r.ntpot for r in ok if r.ntpot is not None]),
        ):
            xs = sorted(v * 1000 for v in values if v is not None)
            if xs:
                ax.plot(xs, [(i + 1) / len(xs) for i in range(len(xs))], label=run.contender.name)
    axes[0].set_xlabel("TTFT (ms, log)")
    axes[1].set_xlabel("normalized TPOT (ms, log)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_ylabel("fraction of requests")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_load(runs: list[ContenderRun], path: Path, title: str) -> None:
    fig, axes = plt.subplots(len(runs), 1, figsize=(8, 1.6 * len(runs) + 0.6), sharex=True, squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=True):
        if run.load:
            times = [t for t, _ in run.load]
            n = len(run.load[0][1])
            for i in range(n):
                ax.plot(times, [max(0, loads[i]) for _, loads in run.load], lw=0.8)
        ax.set_ylabel("in flight", fontsize=7)
        ax.set_title(run.contender.name, fontsize=8, loc="left")
    axes[-1, 0].set_xlabel("simulated seconds")
    fig.suptitle(title + ": per-replica in-flight requests")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


VS_RATE_PANELS: tuple[tuple[str, Callable[[Summary], float | None]], ...] = (
    ("p99 TTFT (ms)", lambda s: None if s.ttft.p99 is None else s.ttft.p99 * 1000),
    ("p90 normalized TPOT (ms)", lambda s: None if s.ntpot.p90 is None else s.ntpot.p90 * 1000),
    ("goodput (req/s)", lambda s: s.goodput_rps),
)


def plot_vs_rate(points: list[SweepPoint], path: Path, title: str) -> None:
    """p99 TTFT, p90 normalized TPOT and goodput against offered rate, one line per contender.

    Failed runs are left out of their contender's line; the other points still show.
    """
    fig, axes = plt.subplots(1, len(VS_RATE_PANELS), figsize=(11, 3.4))
    names = list(dict.fromkeys(p.contender or "" for p in points))
    for name in names:
        mine = sorted((p for p in points if (p.contender or "") == name), key=lambda p: p.rate)
        for ax, (_, metric) in zip(axes, VS_RATE_PANELS, strict=True):
            xy = [(p.rate, y) for p in mine if p.summary is not None and (y := metric(p.summary)) is not None]
            if xy:
                ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o", label=name)
    for ax, (label, _) in zip(axes, VS_RATE_PANELS, strict=True):
        ax.set_xlabel("offered rate (req/s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
