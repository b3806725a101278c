"""Writing results: per-request JSON lines, a summary JSON, markdown tables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from inferpool.bench.client import RequestResult
from inferpool.bench.stats import PrefillLegs, Summary, fmt_ms


def write_results(
    out: Path,
    name: str,
    results: list[RequestResult],
    summary: Summary,
    meta: dict[str, Any],
    by_class: dict[str, Summary] | None = None,
) -> None:
    """`<name>.json` (meta, summary, per-class summaries) and `<name>.requests.jsonl` (one line per request)."""
    out.mkdir(parents=True, exist_ok=True)
    document: dict[str, Any] = {"meta": meta, "summary": summary.to_json()}
    if by_class:
        document["by_class"] = {cls: s.to_json() for cls, s in by_class.items()}
    (out / f"{name}.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    with (out / f"{name}.requests.jsonl").open("wb") as fh:
        for r in results:
            fh.write(orjson.dumps(asdict(r)) + b"\n")


def summary_markdown(title: str, summary: Summary) -> str:
    """One run as a short markdown section."""
    s = summary
    lines = [
        f"### {title}",
        "",
        f"{s.requests} requests, {s.ok} ok, {s.duration_s:.1f} s; throughput {s.throughput_rps:.2f} req/s, "
        f"{s.output_tps:.0f} output tok/s; goodput {s.goodput_rps:.2f} req/s ({s.good_fraction:.0%}, SLO "
        f"{s.slo or 'none'}); shed (429) {s.shed}; errors {s.errors_by_status or 'none'}; prefix hit rate "
        f"{'-' if s.prefix_hit_rate is None else f'{s.prefix_hit_rate:.1%}'}",
        "",
        "| metric (ms) | p50 | p90 | p99 | mean |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, d in (
        ("TTFT", s.ttft),
        ("TPOT", s.tpot),
        ("normalized TPOT", s.ntpot),
        ("ITL", s.itl),
        ("e2e", s.e2e),
    ):
        lines.append(f"| {label} | {fmt_ms(d.p50)} | {fmt_ms(d.p90)} | {fmt_ms(d.p99)} | {fmt_ms(d.mean)} |")
    return "\n".join(lines) + "\n"


CLASS_HEADER = (
    "| contender | class | requests | succeeded | shed (429) | other errors | p50 TTFT ms | p99 TTFT ms | "
    "goodput req/s |"
)


def class_table(rows: list[tuple[str, dict[str, Summary]]]) -> str:
    """Per request class (criticality) of each (contender, per-class summaries). Peers ignore the
    classes but their requests carry them, so every contender is broken down the same way."""
    lines = [CLASS_HEADER, "|---|---|" + "---:|" * 7]
    for contender, by_class in rows:
        for name, s in by_class.items():
            lines.append(
                f"| {contender} | {name} | {s.requests} | {s.ok} | {s.shed} | {other_errors(s)} | "
                f"{fmt_ms(s.ttft.p50)} | {fmt_ms(s.ttft.p99)} | {s.goodput_rps:.2f} |"
            )
    return "\n".join(lines) + "\n"


def other_errors(s: Summary) -> int:
    """Failed requests that were not shed (429)."""
    return sum(n for k, n in s.errors_by_status.items() if k != "429")


@dataclass(frozen=True)
class SweepPoint:
    """One run of a rate sweep; `summary` None when the run failed (`failure` says why)."""

    rate: float
    summary: Summary | None
    contender: str | None = None  # `bench compare`: whose run; `bench run` has one target
    failure: str = ""
    prefill: PrefillLegs | None = None  # a P/D contender's prefill legs, as its gateway counted them
    by_class: Mapping[str, Summary] | None = None  # per request class / ramp step, when the workload has them


def sweep_markdown(points: list[SweepPoint]) -> str:
    """Latency, throughput and goodput against offered rate, one row per run (failed runs too)."""
    named = any(p.contender is not None for p in points)
    head = "| contender " if named else ""
    lines = [
        head
        + "| rate (req/s) | throughput | goodput | p50 TTFT ms | p99 TTFT ms | p90 NTPOT ms | shed | errors |",
        ("|---" if named else "") + "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        first = f"| {p.contender or ''} " if named else ""
        s = p.summary
        if s is None:
            reason = " ".join(p.failure.split())[:120].replace("|", "/")
            lines.append(f"{first}| {p.rate:g} | failed: {reason} | | | | | | |")
            continue
        lines.append(
            f"{first}| {p.rate:g} | {s.throughput_rps:.2f} | {s.goodput_rps:.2f} | {fmt_ms(s.ttft.p50)} | "
            f"{fmt_ms(s.ttft.p99)} | {fmt_ms(s.ntpot.p90)} | {s.shed} | {other_errors(s)} |"
        )
    return "\n".join(lines) + "\n"


def picker_markdown(rows: list[tuple[str, list[Any]]]) -> str:
    """epp-envoy contenders: how the streams split over the picker replicas, and each one's CPU per
    decision (rows: contender name, its PickerStats; contenders without pickers are left out; no
    table unless one contender runs several)."""
    rows = [(name, pickers) for name, pickers in rows if pickers]
    if not any(len(pickers) > 1 for _, pickers in rows):
        return ""  # only a comparison with several replicas says anything about the split
    lines = [
        "| contender | pickers | streams per picker | largest share vs even | CPU µs per decision per picker |",
        "|---|---:|---|---:|---|",
    ]
    for name, pickers in rows:
        streams = [p.streams for p in pickers]
        total = sum(streams)
        even = total / len(streams) if streams else 0
        skew = f"{max(streams) / even - 1:+.1%}" if even else "-"
        cpu = ", ".join(
            "-" if p.cpu_per_decision_us is None else f"{p.cpu_per_decision_us:.0f}" for p in pickers
        )
        lines.append(f"| {name} | {len(pickers)} | {', '.join(map(str, streams))} | {skew} | {cpu} |")
    return "\n".join(lines) + "\n"
