"""The cache-pressure comparison (issue 16) in virtual time: many seeds, no machine noise.

The real Director and scheduler over simulated engines (`bench/virtual.py`: no sockets, no
sleeping), the fleet of the speed-1 runs (4 replicas of llama-3.1-8b-h100 with
`--max-num-seqs 8 --kv-blocks 4096`), the committed `cache-pressure` workload. Profiles that
read KV-cache events (`precise`) get each engine's block events at the end of the step that
made them. Two modes:

    .venv/bin/python bench/cache_pressure_virtual.py capacity [--rates 8,10,12,14] [--seed 100]
    .venv/bin/python bench/cache_pressure_virtual.py ramp --rate C [--seeds 101-120]
        [--profiles default,precise,round-robin] [--jobs 2] [--out DIR]
    .venv/bin/python bench/cache_pressure_virtual.py existing [--seeds 101-120] [--out DIR]

A profile named `NAME:unsized` runs NAME without the engines' KV-cache sizes (as in front of an
engine that exports no vllm:cache_config_info): the approximate prefix index then assumes its
configured capacity (lruCapacityPerServer: 31,250 blocks of 64 characters, ≈500k tokens here).

`capacity`: round-robin alone, Poisson arrivals, 30 s at each rate: C is the highest rate with
≥ 90 % goodput (SLO attainment). `ramp`: 20, 45, 70, 95 and 120 % of C in five 12 s steps;
per step and seed, each profile's p50/p90/p99 TTFT, goodput and prefix-cache hits (JSON per
run under --out, a table on stdout), then per step the ratio of each profile to the first,
seed by seed (median, min–max, and on how many seeds it is lower). `existing`: `precise`
against `default` on the headline workloads with the speed-1 runs' settings (shared-prefix,
24 groups of 4,000-token system prompts at 20 req/s; agent-long-tail, bursty, at 18 req/s;
30 s each), the same per-seed ratios.

What it does not show: the gateway's CPU (decisions are instant here; the speed-1 runs measure
that), and the peer routers (they do not run in virtual time).
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from inferpool.bench.loadgen import TraceSpec
from inferpool.bench.stats import parse_slo, summarize
from inferpool.bench.virtual import simulate
from inferpool.bench.workloads import CACHE_PRESSURE_STEPS, WorkloadOptions
from inferpool.sim.profile import HardwareProfile, load_profile

FLEET = 4
MAX_NUM_SEQS = 8
KV_BLOCKS = 4096
SLO = "ttft=1s,tpot=100ms"


def hardware() -> HardwareProfile:
    base = load_profile("llama-3.1-8b-h100")
    return base.model_copy(update={"max_num_seqs": MAX_NUM_SEQS, "num_gpu_blocks": KV_BLOCKS})


def options(hw: HardwareProfile) -> WorkloadOptions:
    return WorkloadOptions(stream=True, replica_kv_tokens=hw.num_gpu_blocks * hw.block_size)


# the speed-1 runs' settings for the headline workloads (bench/results/2026-12-03/cache-pressure/PLAN.md)
EXISTING: dict[str, tuple[str, float, dict[str, Any]]] = {
    "shared-prefix": ("poisson", 20.0, {"groups": 24, "system_prompt_tokens": 4000}),
    "agent-long-tail": ("bursty", 18.0, {}),
}


def one_run(
    profile: str, rate: float, duration: float, seed: int, arrival: str, workload: str = "cache-pressure"
) -> dict[str, Any]:
    hw = hardware()
    opts = options(hw)
    if workload in EXISTING:
        opts = replace(opts, **EXISTING[workload][2])
    trace = TraceSpec(workload, rate, duration, seed, arrival, opts).build()
    name, _, variant = profile.partition(":")  # "default:unsized": no KV-cache size scraped
    run = simulate(trace, FLEET, name, seed=seed, hardware=hw, cache_sizes_known=variant != "unsized")
    slo = parse_slo(SLO)
    out: dict[str, Any] = {
        "workload": workload,
        "profile": profile,
        "rate": rate,
        "seed": seed,
        "arrival": arrival,
        "requests": len(trace),
        "sim_seconds": run.sim_seconds,
        "wall_seconds": run.wall_seconds,
    }
    groups = {"all": (run.results, duration)}
    if arrival == "ramp":
        window = duration / len(CACHE_PRESSURE_STEPS)
        groups |= {step: ([r for r in run.results if r.tag == step], window) for step in CACHE_PRESSURE_STEPS}
    for name, (results, span) in groups.items():
        s = summarize(results, span, slo)
        out[name] = {
            "requests": s.requests,
            "ok": s.ok,
            "p50_ttft_ms": (s.ttft.p50 or 0.0) * 1000,
            "p90_ttft_ms": (s.ttft.p90 or 0.0) * 1000,
            "p99_ttft_ms": (s.ttft.p99 or 0.0) * 1000,
            "goodput_pct": s.good_fraction * 100,
            "goodput_rps": s.goodput_rps,
            "prefix_hit_pct": (s.prefix_hit_rate or 0.0) * 100,
        }
    return out


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds.extend(range(int(first), int(last or first) + 1))
    return seeds


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def capacity(args: argparse.Namespace) -> None:
    rates = [float(r) for r in args.rates.split(",")]
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(one_run, ["round-robin"] * len(rates), rates, [30.0] * len(rates),
                             [args.seed] * len(rates), ["poisson"] * len(rates)))  # fmt: skip
    print("| rate req/s | goodput % | p90 TTFT ms |\n|---:|---:|---:|")
    for run in runs:
        print(f"| {run['rate']:g} | {run['all']['goodput_pct']:.1f} | {run['all']['p90_ttft_ms']:.0f} |")
    kept = [run["rate"] for run in runs if run["all"]["goodput_pct"] >= 90.0]
    print(f"\nC = {max(kept):g} req/s" if kept else "\nno rate kept 90 % goodput")


def ramp(args: argparse.Namespace) -> None:
    profiles = args.profiles.split(",")
    seeds = parse_seeds(args.seeds)
    jobs = [(p, s) for s in seeds for p in profiles]
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(pool.map(one_run, [p for p, _ in jobs], [args.rate] * len(jobs), [60.0] * len(jobs),
                             [s for _, s in jobs], ["ramp"] * len(jobs)))  # fmt: skip
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for run in runs:
            name = run["profile"].replace(":", "-")  # no colon in a file name
            (args.out / f"{name}-seed{run['seed']}.json").write_text(json.dumps(run, indent=1))
    by = {(run["profile"], run["seed"]): run for run in runs}
    base = profiles[0]
    for step in CACHE_PRESSURE_STEPS:
        print(f"\n### {step}\n")
        print("| profile | p50 TTFT ms | p90 TTFT ms | p99 TTFT ms | goodput % | prefix hit % |")
        print("|---|---:|---:|---:|---:|---:|")
        for profile in profiles:
            cells = [
                spread([by[profile, s][step][key] for s in seeds])
                for key in ("p50_ttft_ms", "p90_ttft_ms", "p99_ttft_ms", "goodput_pct", "prefix_hit_pct")
            ]
            print(f"| {profile} | " + " | ".join(cells) + " |")
        for profile in profiles[1:]:
            for key in ("p90_ttft_ms", "p99_ttft_ms", "goodput_pct"):
                label = f"{profile} ÷ {base}, {key}, seed by seed"
                base_values = [by[base, s][step][key] for s in seeds]
                print("\n" + ratios_line(label, base_values, [by[profile, s][step][key] for s in seeds]))


def ratios_line(label: str, base: list[float], other: list[float]) -> str:
    ratios = [o / b for b, o in zip(base, other, strict=True) if b > 0]
    lower = sum(1 for r in ratios if r < 1.0)
    return f"{label}: {spread(ratios)}, lower on {lower} of {len(ratios)} seeds"


def existing(args: argparse.Namespace) -> None:
    seeds = parse_seeds(args.seeds)
    for workload, (arrival, rate, _) in EXISTING.items():
        jobs = [(p, s) for s in seeds for p in ("default", "precise")]
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(one_run, [p for p, _ in jobs], [rate] * len(jobs), [30.0] * len(jobs),
                                 [s for _, s in jobs], [arrival] * len(jobs), [workload] * len(jobs)))  # fmt: skip
        if args.out:
            (args.out / workload).mkdir(parents=True, exist_ok=True)
            for run in runs:
                path = args.out / workload / f"{run['profile']}-seed{run['seed']}.json"
                path.write_text(json.dumps(run, indent=1))
        by = {(run["profile"], run["seed"]): run["all"] for run in runs}
        print(f"\n### {workload}, {arrival} at {rate:g} req/s\n")
        print("| profile | p50 TTFT ms | p90 TTFT ms | p99 TTFT ms | goodput req/s | prefix hit % |")
        print("|---|---:|---:|---:|---:|---:|")
        keys = ("p50_ttft_ms", "p90_ttft_ms", "p99_ttft_ms", "goodput_rps", "prefix_hit_pct")
        for profile in ("default", "precise"):
            print(
                f"| {profile} | "
                + " | ".join(spread([by[profile, s][k] for s in seeds]) for k in keys)
                + " |"
            )
        for key in keys[:4]:
            base = [by["default", s][key] for s in seeds]
            print("\n" + ratios_line(f"precise ÷ default, {key}, seed by seed", base,
                                     [by["precise", s][key] for s in seeds]))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    modes = parser.add_subparsers(dest="mode", required=True)
    cap = modes.add_parser("capacity", help="round-robin's capacity C on this fleet")
    cap.add_argument("--rates", default="8,9,10,11,12,13,14")
    cap.add_argument("--seed", type=int, default=100)
    cap.add_argument("--jobs", type=int, default=2)
    rmp = modes.add_parser("ramp", help="the comparison: five steps up to 120 %% of C")
    rmp.add_argument("--rate", type=float, required=True, help="C, from `capacity`")
    rmp.add_argument("--seeds", default="101-120")
    rmp.add_argument("--profiles", default="default,precise,round-robin")
    rmp.add_argument("--jobs", type=int, default=2)
    rmp.add_argument("--out", type=Path)
    old = modes.add_parser("existing", help="precise against default on the headline workloads")
    old.add_argument("--seeds", default="101-120")
    old.add_argument("--jobs", type=int, default=2)
    old.add_argument("--out", type=Path)
    args = parser.parse_args()
    {"capacity": capacity, "ramp": ramp, "existing": existing}[args.mode](args)


if __name__ == "__main__":
    main()
