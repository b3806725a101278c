"""The comparison table and the explicit ratios against round-robin and the best peer."""

from __future__ import annotations

from inferpool.bench.compare import ContenderRun
from inferpool.bench.report import other_errors
from inferpool.bench.stats import fmt_ms

HEADER = (
    "| contender | p50 TTFT ms | p90 TTFT ms | p99 TTFT ms | p90 NTPOT ms | throughput req/s | "
    "goodput req/s | prefix hit | shed | errors |"
)


def comparison_table(runs: list[ContenderRun]) -> str:
    lines = [HEADER, "|---|" + "---:|" * 9]
    for run in runs:
        s = run.summary
        hit = "-" if s.prefix_hit_rate is None else f"{s.prefix_hit_rate:.1%}"
        errors = other_errors(s)
        lines.append(
            f"| {run.contender.name} | {fmt_ms(s.ttft.p50)} | {fmt_ms(s.ttft.p90)} | {fmt_ms(s.ttft.p99)} | "
            f"{fmt_ms(s.ntpot.p90)} | {s.throughput_rps:.2f} | {s.goodput_rps:.2f} | {hit} | {s.shed} | {errors} |"
        )
    return "\n".join(lines) + "\n"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}×"


def ratios(runs: list[ContenderRun]) -> str:
    """Each inferpool contender against round-robin and against the best peer (by p99 TTFT).

    Latency ratios below 1 and goodput ratios above 1 favour inferpool.
    """
    baseline = next((r for r in runs if r.contender.profile == "round-robin" and not r.contender.envoy), None)
    peers = [r for r in runs if r.contender.peer is not None and r.summary.ttft.p99 is not None]
    best_peer = min(peers, key=lambda r: r.summary.ttft.p99 or 0.0) if peers else None
    lines = []
    for run in runs:
        if run.contender.peer is not None:
            continue
        for label, ref in (
            ("round-robin", baseline),
            (f"best peer ({best_peer.contender.name})" if best_peer else "best peer", best_peer),
        ):
            if ref is None or ref is run:
                continue
            a, b = run.summary, ref.summary
            lines.append(
                f"- {run.contender.name} vs {label}: p99 TTFT {_ratio(a.ttft.p99, b.ttft.p99)}, "
                f"p90 NTPOT {_ratio(a.ntpot.p90, b.ntpot.p90)}, goodput {_ratio(a.goodput_rps, b.goodput_rps)}"
            )
    return "\n".join(lines) + ("\n" if lines else "")
