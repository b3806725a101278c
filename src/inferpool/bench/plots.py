"""PNG plots with matplotlib's Agg backend: latency CDFs, latency vs rate, per-replica load."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from inferpool.bench.compare import ContenderRun


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
    fig.savefig(path, dpi=80)
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
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_vs_rate(series: dict[str, list[tuple[float, float]]], path: Path, title: str, ylabel: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, points in series.items():
        ax.plot([p[0] for p in points], [p[1] * 1000 for p in points], marker="o", label=name)
    ax.set_xlabel("offered rate (req/s)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
