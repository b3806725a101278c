"""Writing results: per-request JSON lines, a summary JSON, markdown tables."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from inferpool.bench.client import RequestResult
from inferpool.bench.stats import Summary, fmt_ms


def write_results(
    out: Path, name: str, results: list[RequestResult], summary: Summary, meta: dict[str, Any]
) -> None:
    """`<name>.json` (meta + summary) and `<name>.requests.jsonl` (one line per request)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_bytes(
        orjson.dumps({"meta": meta, "summary": summary.to_json()}, option=orjson.OPT_INDENT_2)
    )
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


def sweep_markdown(rows: list[tuple[float, Summary]]) -> str:
    lines = [
        "| rate (req/s) | throughput | goodput | p50 TTFT ms | p99 TTFT ms | p90 NTPOT ms | shed | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rate, s in rows:
        errs = sum(s.errors_by_status.values())
        lines.append(
            f"| {rate:g} | {s.throughput_rps:.2f} | {s.goodput_rps:.2f} | {fmt_ms(s.ttft.p50)} | "
            f"{fmt_ms(s.ttft.p99)} | {fmt_ms(s.ntpot.p90)} | {s.shed} | {errs} |"
        )
    return "\n".join(lines) + "\n"
