"""Put the simulator beside each published figure of sim-calibration.md, in virtual time.

Run `python -m inferpool.sim.calibrate [--profile NAME|PATH]`; it prints a Markdown table that
docs/simulator.md quotes. Every workload is replayed on one engine driven by a VirtualClock.

Each row says how it is used: `fit (step)` rows fixed the GPU step formula (sim-calibration.md
§6), `fit (cpu)` rows fixed the CPU costs (profile key `cpu`), `held out` rows were fitted to
nothing. Targets: ±15 % for figures measured on vLLM V1 or later, ±20 % for the saturated ones;
the step-time row is a lower bound and the V0 rows are reported only.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from inferpool.sim.engine import Engine, SimRequest, StepReport
from inferpool.sim.profile import HardwareProfile, load_profile

FIT_STEP = "fit (step)"
FIT_CPU = "fit (cpu)"
HELD_OUT = "held out"


@dataclass
class Row:
    figure: str
    published: float
    simulated: float
    unit: str
    role: str
    band: float | None = 0.15  # allowed |ratio - 1|; None: not a target (V0 engine)
    lower_bound: bool = False  # the published figure is a floor ("as low as")
    approx: bool = False  # read off a chart

    @property
    def ratio(self) -> float:
        return self.simulated / self.published

    @property
    def verdict(self) -> str:
        if self.lower_bound:
            return "yes (bound)" if self.simulated >= self.published else "no"
        if self.band is None:
            return "not a target (V0)"
        return "yes" if abs(self.ratio - 1) <= self.band + 1e-9 else "no"


@dataclass(frozen=True)
class ShareGPTLengths:
    """A synthetic ShareGPT sample: lognormal lengths (σ 1.0) through vLLM's ShareGPT filter.

    The medians are chosen so that the filtered means equal the published sample's means.
    """

    source: str
    mean_in: float
    mean_out: float
    median_in: float
    median_out: float
    sigma: float = 1.0

    def draw(self, rng: random.Random) -> tuple[int, int]:
        """One (prompt, output) pair; vLLM's sampler skips pairs with either side under 4 tokens,
        a prompt over 1,024 or prompt + output over 2,048 (benchmarks/datasets.py)."""
        while True:
            n_in = round(rng.lognormvariate(math.log(self.median_in), self.sigma))
            n_out = round(rng.lognormvariate(math.log(self.median_out), self.sigma))
            if n_in >= 4 and n_out >= 4 and n_in <= 1024 and n_in + n_out <= 2048:
                return n_in, n_out


# vllm PR #18566 (V1, Llama-3.1-8B-Instruct, chat endpoint, 1,000 requests): 229,711 prompt and
# 203,068 generated tokens.
SHAREGPT_V1 = ShareGPTLengths("vllm PR #18566", 229.7, 203.1, median_in=171.6, median_out=129.4)
# vLLM v0.6.0 post (Llama 3 8B, completions, 500 prompts): average input 202, output 179.
SHAREGPT_V060 = ShareGPTLengths("vLLM v0.6.0 post", 202.0, 179.0, median_in=143.7, median_out=112.9)


def _prompt(rng: random.Random, n: int) -> list[int]:
    """Unique token ids: no accidental prefix-cache hits between requests."""
    return [rng.randrange(3, 128_000) for _ in range(n)]


def _open_loop(
    profile: HardwareProfile, arrivals: list[tuple[float, int, int]], seed: int = 0
) -> list[SimRequest]:
    """Requests (arrival time, prompt tokens, output tokens) arriving at fixed times; output forced by ignore_eos."""
    engine = Engine(profile)
    rng = random.Random(seed)
    done: list[SimRequest] = []
    engine.finish_hooks.append(done.append)
    # by arrival time only: a burst keeps its (random) order, not shortest-prompt-first
    for i, (t, n_in, n_out) in enumerate(sorted(arrivals, key=lambda a: a[0])):
        if t > engine.clock.now():
            engine.advance(t - engine.clock.now())
        req = SimRequest(f"r{i}", _prompt(rng, n_in), n_out, ignore_eos=True)
        engine.add_request(req)
        req.arrival_time = t
    engine.run_until_idle()
    return done


def _closed_loop(
    profile: HardwareProfile, concurrency: int, total: int, n_in: int, n_out: int
) -> list[SimRequest]:
    """`concurrency` clients, each sending its next request when the previous one finishes."""
    engine = Engine(profile)
    rng = random.Random(1)
    done: list[SimRequest] = []
    sent = 0

    def send() -> None:
        # "~20k in / ~2k out": lengths vary ±10 %, so the clients do not finish in lockstep
        nonlocal sent
        jitter_in, jitter_out = rng.uniform(0.9, 1.1), rng.uniform(0.9, 1.1)
        prompt = _prompt(rng, round(n_in * jitter_in))
        engine.add_request(SimRequest(f"r{sent}", prompt, round(n_out * jitter_out), ignore_eos=True))
        sent += 1

    def on_finish(req: SimRequest) -> None:
        done.append(req)
        if sent < total:
            send()

    engine.finish_hooks.append(on_finish)
    for _ in range(concurrency):
        send()
    engine.run_until_idle()
    return done


def _ttft(r: SimRequest) -> float:
    assert r.first_token_time is not None
    return r.first_token_time - r.arrival_time


def _itl(r: SimRequest) -> float:
    assert r.first_token_time is not None and r.finish_time is not None
    return (r.finish_time - r.first_token_time) / max(1, len(r.output_token_ids) - 1)


def _e2e(r: SimRequest) -> float:
    assert r.finish_time is not None
    return r.finish_time - r.arrival_time


def _sharegpt(
    rng: random.Random, n: int, rate: float | None, lengths: ShareGPTLengths = SHAREGPT_V1
) -> list[tuple[float, int, int]]:
    """`n` ShareGPT-like requests with Poisson arrivals at `rate` (all at 0 when None)."""
    return _arrivals(rng, n, rate, lengths.draw)


def _arrivals(
    rng: random.Random, n: int, rate: float | None, draw: Callable[[random.Random], tuple[int, int]]
) -> list[tuple[float, int, int]]:
    """`n` requests (arrival, prompt tokens, output tokens) with Poisson arrivals at `rate` (all
    at 0 when None), each request's lengths drawn after its gap."""
    out = []
    t = 0.0
    for _ in range(n):
        if rate is not None:
            t += rng.expovariate(rate)
        n_in, n_out = draw(rng)
        out.append((t, n_in, n_out))
    return out


def without_api_server(profile: HardwareProfile) -> HardwareProfile:
    """The profile with no API-server work: for figures measured with tokenisation and
    detokenisation disabled (the kv-offloading post's benchmarks, "De/Tokenization disabled"),
    where no chat template, tokeniser or detokeniser runs per request or per token."""
    cpu = profile.cpu.model_copy(update={"frontend_per_request_ms": 0.0, "frontend_per_output_token_ms": 0.0})
    return profile.model_copy(update={"cpu": cpu})


def _step_durations(profile: HardwareProfile, run: Callable[[Engine], None]) -> list[float]:
    engine = Engine(profile)
    steps: list[float] = []
    engine.step_hooks.append(lambda r: steps.append(r.duration))
    run(engine)
    return steps


def calibrate(profile: HardwareProfile) -> list[Row]:
    rows: list[Row] = []
    ms = 1000.0
    saturated = 0.20

    # 1. ITL at concurrency 1 vs context (fp8-kv post fig. 2: 4.37e-5 ms/token × input + 6.44 ms).
    for n_in, itl_pub in (
        (1_000, 6.44 + 4.37e-5 * 1_000),
        (32_000, 6.44 + 4.37e-5 * 32_000),
        (125_000, 12.0),
    ):
        r = _open_loop(profile, [(0.0, n_in, 128)])[0]
        rows.append(Row(f"ITL, concurrency 1, {n_in:,} in / 128 out", itl_pub, _itl(r) * ms, "ms", FIT_STEP))

    # 2. Concurrency 8, ~20k in / ~2k out.
    reqs = _closed_loop(profile, 8, 24, 20_000, 2_000)
    span = max(r.finish_time or 0 for r in reqs) - min(r.arrival_time for r in reqs)
    tok_s = sum(len(r.output_token_ids) for r in reqs) / span
    rows.append(Row("concurrency 8, 20k/2k: median TTFT", 763.6, statistics.median(map(_ttft, reqs)) * ms, "ms",
                    FIT_STEP))  # fmt: skip
    rows.append(Row("concurrency 8, 20k/2k: median ITL", 15.18, statistics.median(map(_itl, reqs)) * ms, "ms",
                    FIT_STEP))  # fmt: skip
    rows.append(Row("concurrency 8, 20k/2k: output throughput", 450.3, tok_s, "tok/s", FIT_STEP))

    # 3. TTFT of a single request vs prompt length (kv-offloading post fig. 1). That post's
    # benchmarks ran with "De/Tokenization disabled": no API-server work per request or token.
    offload_setup = without_api_server(profile)
    for n_in, pub in ((1_000, 30), (10_000, 260), (20_000, 640), (30_000, 1_100), (50_000, 2_290),
                      (100_000, 6_850), (131_000, 10_100)):  # fmt: skip
        r = _open_loop(offload_setup, [(0.0, n_in, 1)])[0]
        rows.append(Row(f"TTFT, single request, {n_in:,}-token prompt", pub, _ttft(r) * ms, "ms", FIT_STEP,
                        approx=True))  # fmt: skip

    # 4. Prefill throughput: 10,000 prompts of 512 tokens at once, no cache hits (same post, fig. 2,
    # same setup: no de/tokenisation).
    reqs = _open_loop(offload_setup, [(0.0, 512, 1)] * 10_000)
    span = max(r.finish_time or 0 for r in reqs)
    rows.append(Row("prefill throughput, 10,000 × 512-token prompts", 43_000, 10_000 * 512 / span, "tok/s",
                    FIT_STEP, approx=True))  # fmt: skip

    # 5. GPU time per step at batch 1 ("as low as ~5 ms": a floor, not a value).
    def one_decoder(engine: Engine) -> None:
        engine.add_request(SimRequest("a", [5] * 32, 64, ignore_eos=True))
        engine.run_until_idle()

    steps = _step_durations(profile, one_decoder)
    rows.append(Row("step time, one decoding request", 5.0, statistics.median(steps) * ms, "ms", FIT_STEP,
                    lower_bound=True, approx=True))  # fmt: skip

    # 6. Burst of 1,000 ShareGPT requests (PR #18566, chat endpoint).
    burst = _sharegpt(random.Random(7), 1_000, None)
    reqs = _open_loop(profile, burst)
    span = max(r.finish_time or 0 for r in reqs)
    out_tok = sum(len(r.output_token_ids) for r in reqs)
    rows.append(
        Row("burst of 1,000 ShareGPT: throughput", 32.42, len(reqs) / span, "req/s", HELD_OUT, saturated)
    )
    rows.append(Row("burst of 1,000 ShareGPT: output tokens/s", 6_582.87, out_tok / span, "tok/s", HELD_OUT,
                    saturated))  # fmt: skip
    itls = _all_itls(profile, burst)
    rows.append(Row("burst of 1,000 ShareGPT: median ITL", 25.44, statistics.median(itls) * ms, "ms", FIT_CPU,
                    saturated))  # fmt: skip
    rows.append(Row("burst of 1,000 ShareGPT: mean TTFT", 9_626.13, statistics.mean(map(_ttft, reqs)) * ms, "ms",
                    FIT_CPU, saturated))  # fmt: skip

    # 7. V1 ShareGPT mean e2e latency vs QPS (V1 alpha post chart; Poisson, 1,000 requests per point).
    for rate, e2e_pub in ((1, 1.7), (20, 2.0), (40, 2.8), (50, 3.9), (60, 7.1), (70, 13.5)):
        reqs = _open_loop(profile, _sharegpt(random.Random(rate), 1_000, float(rate)))
        role = FIT_CPU if rate in (1, 50, 60, 70) else HELD_OUT
        band = saturated if rate >= 50 else 0.15
        rows.append(Row(f"ShareGPT e2e latency at QPS {rate} (V1)", e2e_pub, statistics.mean(map(_e2e, reqs)), "s",
                        role, band, approx=True))  # fmt: skip

    # 7b. A saturated steady state: 8,400 requests, Poisson at 70 QPS, exactly 200 in / 200 out
    # (vllm PR #14902's "before": V1 of March 2025, Llama-8B, H100, benchmark_serving). Arrivals
    # outrun the engine for two minutes, so the batch fills to max_num_seqs and stays there.
    reqs = _open_loop(profile, _arrivals(random.Random(14902), 8_400, 70.0, lambda _rng: (200, 200)))
    span = max(r.finish_time or 0 for r in reqs) - min(r.arrival_time for r in reqs)
    tpots = [_itl(r) for r in reqs]
    rows.append(Row("8,400 requests at QPS 70, 200/200: throughput", 60.39, len(reqs) / span, "req/s",
                    HELD_OUT, saturated))  # fmt: skip
    rows.append(Row("8,400 requests at QPS 70, 200/200: mean TTFT", 2_631.59,
                    statistics.mean(map(_ttft, reqs)) * ms, "ms", HELD_OUT, saturated))  # fmt: skip
    rows.append(Row("8,400 requests at QPS 70, 200/200: mean TPOT", 70.19, statistics.mean(tpots) * ms, "ms",
                    HELD_OUT, saturated))  # fmt: skip
    rows.append(Row("8,400 requests at QPS 70, 200/200: median TPOT", 81.53, statistics.median(tpots) * ms,
                    "ms", HELD_OUT, saturated))  # fmt: skip

    # 8. v0.6.0 ShareGPT median TPOT vs QPS (V0 engine, Llama-3-8B): reported, not a target.
    for qps, tpot_pub in ((4.0, 8.0), (32.0, 14.0), (None, 57.0)):
        reqs = _open_loop(profile, _sharegpt(random.Random(11), 1_000, qps, SHAREGPT_V060))
        label = "inf" if qps is None else f"{qps:g}"
        tpot = statistics.median(_itl(r) for r in reqs if len(r.output_token_ids) > 1)
        rows.append(Row(f"ShareGPT median TPOT at QPS {label} (v0.6.0)", tpot_pub, tpot * ms, "ms", HELD_OUT, None,
                        approx=True))  # fmt: skip

    # 9. CI latency test: batch 8, 32 in / 128 out (older vLLM): reported, not a target.
    reqs = _open_loop(profile, [(0.0, 32, 128)] * 8)
    rows.append(Row("CI latency: batch 8, 32 in / 128 out (older vLLM)", 997.5, max(map(_e2e, reqs)) * ms, "ms",
                    HELD_OUT, None))  # fmt: skip
    return rows


def _all_itls(profile: HardwareProfile, arrivals: list[tuple[float, int, int]]) -> list[float]:
    itls: list[float] = []
    engine = Engine(profile)
    rng = random.Random(0)

    def on_step(report: StepReport) -> None:
        itls.extend(report.itls)

    engine.step_hooks.append(on_step)
    for i, (_, n_in, n_out) in enumerate(arrivals):
        engine.add_request(SimRequest(f"r{i}", _prompt(rng, n_in), n_out, ignore_eos=True))
    engine.run_until_idle()
    return itls


def _number(value: float, unit: str) -> str:
    digits = 2 if abs(value) < 20 else 1 if abs(value) < 1_000 else 0
    return f"{value:,.{digits}f} {unit}"


def render(rows: list[Row]) -> str:
    lines = ["| published figure | published | simulator | sim ÷ published | in band? | used as |",
             "|---|---:|---:|---:|---|---|"]  # fmt: skip
    for r in rows:
        pub = ("as low as ≈" if r.lower_bound else "≈" if r.approx else "") + _number(r.published, r.unit)
        band = "" if r.band is None or r.lower_bound else f" (±{r.band:.0%})"
        lines.append(f"| {r.figure} | {pub} | {_number(r.simulated, r.unit)} | {r.ratio:.2f}× | {r.verdict}{band}"
                     f" | {r.role} |")  # fmt: skip
    targets = [r for r in rows if r.band is not None or r.lower_bound]
    missed = [r for r in targets if not r.verdict.startswith("yes")]
    lines.append("")
    lines.append(f"{len(targets) - len(missed)} of {len(targets)} target rows in band.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m inferpool.sim.calibrate", description=__doc__)
    parser.add_argument(
        "--profile",
        default="llama-3.1-8b-h100",
        help="The simulator profile to check against the published figures (a built-in name or a .yaml "
        "file; default %(default)s).",
    )
    args = parser.parse_args()
    try:
        profile = load_profile(args.profile)
    except ValueError as err:
        parser.error(str(err))  # one line and exit status 2, as for any other bad argument
    print(render(calibrate(profile)))


if __name__ == "__main__":
    main()
