"""Scheduler profiles side by side in virtual time (the real Director and scheduler over simulated
engines, no sockets): p50/p99 TTFT and TPOT, SLO attainment, goodput and prefix-cache hits,
one row per profile × workload × rate × seed, then the mean over seeds.

    .venv/bin/python bench/slo_virtual.py [--workload shared-prefix] [--rates 18,22] [--seeds 0,1,2]
        [--profiles default,slo-aware] [--duration 60] [--slo ttft=1s,tpot=50ms] [--slo-headers]
        [--speeds 1,1,1,0.5] [--warmup 10]

Requests sent in the first --warmup seconds are left out of the figures but one ("p99 TTFT
incl. warm-up"): every prompt misses the cache then and every learned model is untrained, so
that stretch is the cold start, which says little about the steady state. --slo-headers puts
the SLO on every request as `x-slo-ttft-ms` / `x-slo-tpot-ms`, which only the predicted-latency
scorer reads.

Workloads: shared-prefix is 150 groups with 6000-token system prompts and 100-token answers
(the issue's setup); multi-lora is ShareGPT-shaped requests over 8 Zipf-popular adapters plus
20 % base-model requests; criticality-overload is ShareGPT-shaped requests, 20 % critical,
50 % standard, 30 % sheddable (priority −1: predicted-latency sheds those when no endpoint is
predicted to meet their SLO headers). --speeds makes the pool heterogeneous (0.5: that
replica's GPU steps take twice as long).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

from inferpool.bench.loadgen import TraceSpec
from inferpool.bench.stats import Slo, parse_slo, summarize
from inferpool.bench.virtual import simulate
from inferpool.bench.workloads import BenchRequest, WorkloadOptions

OPTIONS = {
    "shared-prefix": WorkloadOptions(groups=150, system_prompt_tokens=6000, output_tokens=100),
    "multi-lora": WorkloadOptions(),
    "criticality-overload": WorkloadOptions(),
}
COLUMNS = (
    "p50 TTFT ms",
    "p99 TTFT ms",
    "p99 TTFT ms incl. warm-up",
    "p50 TPOT ms",
    "p99 TPOT ms",
    "SLO met %",
    "SLO met % non-sheddable",
    "shed %",
    "goodput req/s",
    "prefix hit %",
)


def with_slo_headers(trace: list[BenchRequest], slo: Slo) -> list[BenchRequest]:
    headers: dict[str, str] = {}
    if slo.ttft is not None:
        headers["x-slo-ttft-ms"] = f"{slo.ttft * 1000:g}"
    if slo.tpot is not None:
        headers["x-slo-tpot-ms"] = f"{slo.tpot * 1000:g}"
    return [dataclasses.replace(r, headers={**r.headers, **headers}) for r in trace]


def one_run(workload: str, rate: float, seed: int, profile: str, args: argparse.Namespace) -> list[float]:
    slo = parse_slo(args.slo)
    trace = TraceSpec(workload, rate, args.duration, seed, "poisson", OPTIONS[workload]).build()
    if args.slo_headers:
        trace = with_slo_headers(trace, slo)
    speeds = [float(v) for v in args.speeds.split(",")] if args.speeds else None
    run = simulate(trace, args.replicas, profile, seed=seed, speeds=speeds)
    steady = [r for r in run.results if r.sent_at >= args.warmup]  # the cold start is its own story
    s = summarize(steady, run.sim_seconds - args.warmup, slo)
    whole = summarize(run.results, run.sim_seconds, slo)
    kept = [r for r in steady if r.tag != "sheddable"]  # criticality-overload's classes
    return [
        (s.ttft.p50 or 0.0) * 1000,
        (s.ttft.p99 or 0.0) * 1000,
        (whole.ttft.p99 or 0.0) * 1000,
        (s.tpot.p50 or 0.0) * 1000,
        (s.tpot.p99 or 0.0) * 1000,
        s.good_fraction * 100,
        100 * sum(1 for r in kept if slo.met(r)) / max(len(kept), 1),
        100 * s.shed / max(s.requests, 1),
        s.goodput_rps,
        (s.prefix_hit_rate or 0.0) * 100,
    ]


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", default="shared-prefix", choices=sorted(OPTIONS))
    parser.add_argument("--rates", default="18,22")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--profiles", default="default,slo-aware")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--duration", type=float, default=60.0, help="simulated seconds of arrivals")
    parser.add_argument("--warmup", type=float, default=10.0, help="leave out requests sent before this")
    parser.add_argument("--slo", default="ttft=1s,tpot=50ms")
    parser.add_argument("--slo-headers", action="store_true")
    parser.add_argument(
        "--speeds", default="", help="relative replica speeds, e.g. 1,1,1,0.5 (default all 1)"
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(row(["profile", "rate", "seed", *COLUMNS]))
    print(row(["---"] * (3 + len(COLUMNS))))
    means = []
    for rate in (float(r) for r in args.rates.split(",")):
        for profile in args.profiles.split(","):
            runs = []
            for seed in seeds:
                values = one_run(args.workload, rate, seed, profile, args)
                runs.append(values)
                print(row([profile, f"{rate:g}", str(seed), *(f"{v:.1f}" for v in values)]), flush=True)
            mean = [statistics.fmean(column) for column in zip(*runs, strict=True)]
            means.append(row([profile, f"{rate:g}", "mean", *(f"{v:.1f}" for v in mean)]))
    print()
    print(row(["profile", "rate", "seeds", *COLUMNS]))
    print(row(["---"] * (3 + len(COLUMNS))))
    print("\n".join(means))


if __name__ == "__main__":
    main()
