"""The comparison table and the explicit ratios against round-robin and the best peer."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial

from inferpool.bench.compare import ContenderRun
from inferpool.bench.report import SweepPoint, other_errors
from inferpool.bench.stats import Summary, fmt_ms

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


# (heading, value in the unit shown, lower is better) for the table over seeds
Metric = tuple[str, Callable[[SweepPoint], float | None], bool]
_SEED_METRICS: tuple[Metric, ...] = (
    ("p50 TTFT ms", lambda p: _ms(_s(p).ttft.p50), True),
    ("p90 TTFT ms", lambda p: _ms(_s(p).ttft.p90), True),
    ("p99 TTFT ms", lambda p: _ms(_s(p).ttft.p99), True),
    ("p90 NTPOT ms", lambda p: _ms(_s(p).ntpot.p90), True),
    ("output tok/s", lambda p: _s(p).output_tps, False),
    ("goodput req/s", lambda p: _s(p).goodput_rps, False),
    ("prefix hit %", lambda p: _percent(_s(p).prefix_hit_rate), False),
)
# The P/D table: the two latencies disaggregation trades (TTFT for a prefill hop, ITL free of
# prefill steps), what the fleet delivers, how much prefill the prefix caches saved, and what
# the gateway did with the prefill legs.
PD_METRICS: tuple[Metric, ...] = (
    ("p50 TTFT ms", lambda p: _ms(_s(p).ttft.p50), True),
    ("p90 TTFT ms", lambda p: _ms(_s(p).ttft.p90), True),
    ("p99 TTFT ms", lambda p: _ms(_s(p).ttft.p99), True),
    ("p50 ITL ms", lambda p: _ms(_s(p).itl.p50), True),
    ("p90 ITL ms", lambda p: _ms(_s(p).itl.p90), True),
    ("p99 ITL ms", lambda p: _ms(_s(p).itl.p99), True),
    ("output tok/s", lambda p: _s(p).output_tps, False),
    ("goodput req/s", lambda p: _s(p).goodput_rps, False),
    ("prefill prefix hit %", lambda p: _percent(_prefill_hit(p)), False),
    ("prefill legs", lambda p: None if p.prefill is None else p.prefill.legs, False),
    ("fallbacks", lambda p: None if p.prefill is None else p.prefill.fallbacks, True),
)


def _prefill_hit(point: SweepPoint) -> float | None:
    """The share of prompt tokens the replica that prefilled found in its own prefix cache: the
    prefill replicas' own count for a P/D fleet (its client-side cached tokens include the KV
    pulled from them), the answers' cached tokens for an aggregated one."""
    if point.prefill is not None:
        return point.prefill.prefix_hit_rate
    return _s(point).prefix_hit_rate


def _s(point: SweepPoint) -> Summary:
    assert point.summary is not None  # failed points are counted apart before any metric is read
    return point.summary


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def pd_run_table(points: list[SweepPoint]) -> str:
    """One seed's P/D comparison: a row per contender with PD_METRICS (failed runs say so)."""
    headings = [h for h, _, _ in PD_METRICS]
    lines = ["| contender | " + " | ".join(headings) + " |", "|---|" + "---:|" * len(headings)]
    for p in points:
        if p.summary is None or p.summary.ok == 0:
            lines.append(f"| {p.contender} | failed |" + " |" * (len(headings) - 1))
            continue
        values = [value(p) for _, value, _ in PD_METRICS]
        lines.append(f"| {p.contender} | " + " | ".join("-" if v is None else _num(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


def spread(values: list[float]) -> str:
    """'median (min–max)' in three significant figures."""
    return f"{_num(statistics.median(values))} ({_num(min(values))}–{_num(max(values))})"


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def seeds_table(by_seed: Mapping[int, list[SweepPoint]], contenders: list[str]) -> str:
    """One table per rate: each contender's median over seeds with min–max, then the ratio of its
    median to round-robin's and to the best peer's (by median p99 TTFT). A contender that failed
    on some seed says so instead of a figure built from fewer seeds."""
    return _over_seeds(by_seed, contenders, _SEED_METRICS, _median_ratios)


# Per class (a criticality class, or a ramp step of cache-pressure, whose rates are over the
# step's own window): the latencies, what was delivered, and the share of requests within the SLO.
CLASS_METRICS: tuple[Metric, ...] = (
    ("requests", lambda p: float(_s(p).requests), False),
    ("p50 TTFT ms", lambda p: _ms(_s(p).ttft.p50), True),
    ("p90 TTFT ms", lambda p: _ms(_s(p).ttft.p90), True),
    ("p99 TTFT ms", lambda p: _ms(_s(p).ttft.p99), True),
    ("output tok/s", lambda p: _s(p).output_tps, False),
    ("goodput req/s", lambda p: _s(p).goodput_rps, False),
    ("goodput %", lambda p: 100 * _s(p).good_fraction, False),
    ("prefix hit %", lambda p: _percent(_s(p).prefix_hit_rate), False),
)


def class_seeds_table(
    by_seed: Mapping[int, list[SweepPoint]], contenders: list[str], classes: tuple[str, ...]
) -> str:
    """One table per class (and rate): each contender's median over seeds with min–max, then
    every contender's medians against the first contender's and against the best peer's (by
    median p90 TTFT): p90 TTFT, output tok/s, goodput."""
    out = []
    for cls in classes:
        per_class = {
            seed: [
                replace(p, summary=p.by_class.get(cls) if p.by_class else None, by_class=None) for p in points
            ]
            for seed, points in by_seed.items()
        }
        out.append(
            _over_seeds(
                per_class,
                contenders,
                CLASS_METRICS,
                _against_first_and_best_peer,
                title=partial(_class_title, cls),
            )
        )
    return "\n".join(out)


def _class_title(cls: str, rate: float, seeds: int) -> str:
    return f"## {cls} ({rate:g} req/s): median (min–max) over {seeds} seeds\n"


def _against_first_and_best_peer(medians: dict[str, dict[str, float]], contenders: list[str]) -> list[str]:
    peers = [n for n in contenders if n in medians and n.split(" ")[0] in ("sglang-router", "vllm-router")]
    best_peer = min(peers, key=lambda n: medians[n].get("p90 TTFT ms", float("inf")), default=None)
    first = contenders[0] if contenders else None
    lines = []
    for name in contenders:
        if name not in medians or name in peers:
            continue
        for ref in (first, best_peer):
            if ref is None or ref == name or ref not in medians:
                continue
            parts = []
            for heading in ("p90 TTFT ms", "output tok/s", "goodput req/s"):
                a, b = medians[name].get(heading), medians[ref].get(heading)
                parts.append(f"{heading.rsplit(' ', 1)[0]} {_ratio(a, b)}")
            lines.append(f"- {name} vs {ref} (medians): " + ", ".join(parts))
    return lines


def pd_seeds_table(by_seed: Mapping[int, list[SweepPoint]], contenders: list[str], baseline: str) -> str:
    """The P/D comparison per rate: TTFT and ITL percentiles, output throughput, goodput and the
    prefill legs, median (min–max) over seeds, then each layout's medians against `baseline`
    (the aggregated fleet)."""

    def against_baseline(medians: dict[str, dict[str, float]], names: list[str]) -> list[str]:
        if baseline not in medians:
            return []
        lines = []
        for name in names:
            if name == baseline or name not in medians:
                continue
            parts = []
            for heading in ("p99 TTFT ms", "p99 ITL ms", "output tok/s", "goodput req/s"):
                a, b = medians[name].get(heading), medians[baseline].get(heading)
                parts.append(f"{heading.rsplit(' ', 1)[0]} {_ratio(a, b)}")
            lines.append(f"- {name} vs {baseline} (medians): " + ", ".join(parts))
        return lines

    return _over_seeds(by_seed, contenders, PD_METRICS, against_baseline)


def _over_seeds(
    by_seed: Mapping[int, list[SweepPoint]],
    contenders: list[str],
    metrics: tuple[Metric, ...],
    ratio_lines: Callable[[dict[str, dict[str, float]], list[str]], list[str]],
    title: Callable[[float, int], str] = lambda rate, n: (
        f"## {rate:g} req/s: median (min–max) over {n} seeds\n"
    ),
) -> str:
    rates = sorted({p.rate for points in by_seed.values() for p in points})
    out: list[str] = []
    for rate in rates:
        cells: dict[str, dict[str, list[float]]] = {}
        failed: dict[str, int] = {}
        for points in by_seed.values():
            for p in points:
                if p.rate != rate or p.contender is None:
                    continue
                if p.summary is None or p.summary.ok == 0:
                    failed[p.contender] = failed.get(p.contender, 0) + 1
                    continue
                row = cells.setdefault(p.contender, {})
                for heading, value, _ in metrics:
                    v = value(p)
                    if v is not None:
                        row.setdefault(heading, []).append(v)
        headings = [h for h, _, _ in metrics]
        lines = [
            title(rate, len(by_seed)),
            "| contender | " + " | ".join(headings) + " |",
            "|---|" + "---:|" * len(headings),
        ]
        for name in contenders:
            if failed.get(name):
                lines.append(
                    f"| {name} | failed on {failed[name]} of {len(by_seed)} seeds |"
                    + " |" * (len(headings) - 1)
                )
                continue
            row = cells.get(name, {})
            lines.append(
                f"| {name} | " + " | ".join(spread(row[h]) if row.get(h) else "-" for h in headings) + " |"
            )
        medians = {
            n: {h: statistics.median(v) for h, v in row.items()}
            for n, row in cells.items()
            if n not in failed
        }
        lines.append("")
        lines += ratio_lines(medians, contenders)
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def _median_ratios(medians: dict[str, dict[str, float]], contenders: list[str]) -> list[str]:
    peers = [n for n in contenders if n in medians and n.split(" ")[0] in ("sglang-router", "vllm-router")]
    best_peer = min(peers, key=lambda n: medians[n].get("p99 TTFT ms", float("inf")), default=None)
    lines = []
    for name in contenders:
        if name not in medians or name in peers or name == "round-robin":
            continue
        for ref in ("round-robin", best_peer):
            if ref is None or ref not in medians:
                continue
            parts = []
            for heading in ("p99 TTFT ms", "p90 NTPOT ms", "goodput req/s"):
                a, b = medians[name].get(heading), medians[ref].get(heading)
                parts.append(f"{heading.rsplit(' ', 1)[0]} {_ratio(a, b)}")
            lines.append(f"- {name} vs {ref} (medians): " + ", ".join(parts))
    return lines
