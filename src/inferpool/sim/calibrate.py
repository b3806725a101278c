"""Put the simulator beside each published figure of sim-calibration.md, in virtual time.

Run `python -m inferpool.sim.calibrate [--profile NAME|PATH]`; it prints a Markdown table that
docs/simulator.md quotes. Every workload is replayed on one engine driven by a VirtualClock.
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


@dataclass
class Row:
    figure: str
    published: str
    simulated: str


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
    for i, (t, n_in, n_out) in enumerate(sorted(arrivals)):
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
        nonlocal sent
        engine.add_request(SimRequest(f"r{sent}", _prompt(rng, n_in), n_out, ignore_eos=True))
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


def _sharegpt(rng: random.Random, n: int, rate: float | None) -> list[tuple[float, int, int]]:
    """ShareGPT-like lengths (lognormal input median 150, output median 128) and Poisson arrivals."""
    out = []
    t = 0.0
    for _ in range(n):
        if rate is not None:
            t += rng.expovariate(rate)
        n_in = max(4, min(4096, round(rng.lognormvariate(math.log(150), 1.0))))
        n_out = max(1, min(2048, round(rng.lognormvariate(math.log(128), 1.0))))
        out.append((t, n_in, n_out))
    return out


def _step_durations(profile: HardwareProfile, run: Callable[[Engine], None]) -> list[float]:
    engine = Engine(profile)
    steps: list[float] = []
    engine.step_hooks.append(lambda r: steps.append(r.duration))
    run(engine)
    return steps


def calibrate(profile: HardwareProfile) -> list[Row]:
    rows: list[Row] = []
    ms = 1000.0

    # 1. ITL at concurrency 1 vs context.
    for n_in, itl_pub in (
        (1_000, 6.44 + 4.37e-5 * 1_000),
        (32_000, 6.44 + 4.37e-5 * 32_000),
        (125_000, 12.0),
    ):
        r = _open_loop(profile, [(0.0, n_in, 128)])[0]
        rows.append(
            Row(f"ITL, concurrency 1, {n_in:,} in / 128 out", f"{itl_pub:.2f} ms", f"{_itl(r) * ms:.2f} ms")
        )

    # 2. Concurrency 8, ~20k in / ~2k out.
    reqs = _closed_loop(profile, 8, 24, 20_000, 2_000)
    span = max(r.finish_time or 0 for r in reqs) - min(r.arrival_time for r in reqs)
    tok_s = sum(len(r.output_token_ids) for r in reqs) / span
    rows.append(
        Row(
            "concurrency 8, 20k/2k: median TTFT",
            "763.6 ms",
            f"{statistics.median(map(_ttft, reqs)) * ms:.1f} ms",
        )
    )
    rows.append(
        Row(
            "concurrency 8, 20k/2k: median ITL",
            "15.18 ms",
            f"{statistics.median(map(_itl, reqs)) * ms:.2f} ms",
        )
    )
    rows.append(Row("concurrency 8, 20k/2k: output throughput", "450.3 tok/s", f"{tok_s:.1f} tok/s"))

    # 3. TTFT of a single request vs prompt length.
    for n_in, pub in ((1_000, "≈30"), (10_000, "≈260"), (20_000, "≈640"), (30_000, "≈1,100"), (50_000, "≈2,290"),
                      (100_000, "≈6,850"), (131_000, "≈10,100")):  # fmt: skip
        r = _open_loop(profile, [(0.0, n_in, 1)])[0]
        rows.append(
            Row(f"TTFT, single request, {n_in:,}-token prompt", f"{pub} ms", f"{_ttft(r) * ms:,.0f} ms")
        )

    # 4. Prefill throughput: 10,000 prompts of 512 tokens at once, no cache hits.
    reqs = _open_loop(profile, [(0.0, 512, 1)] * 10_000)
    span = max(r.finish_time or 0 for r in reqs)
    rows.append(Row("prefill throughput, 10,000 × 512-token prompts", "≈43,000 tok/s",
                    f"{10_000 * 512 / span:,.0f} tok/s"))  # fmt: skip

    # 5. GPU time per step at batch 1.
    def one_decoder(engine: Engine) -> None:
        engine.add_request(SimRequest("a", [5] * 32, 64, ignore_eos=True))
        engine.run_until_idle()

    steps = _step_durations(profile, one_decoder)
    rows.append(
        Row("step time, one decoding request", "as low as ≈5 ms", f"{statistics.median(steps) * ms:.2f} ms")
    )

    # 6. Burst of 1,000 ShareGPT requests.
    rng = random.Random(7)
    reqs = _open_loop(profile, _sharegpt(rng, 1_000, None))
    span = max(r.finish_time or 0 for r in reqs)
    rows.append(
        Row("burst of 1,000 ShareGPT requests: throughput", "32.42 req/s", f"{len(reqs) / span:.2f} req/s")
    )
    out_tok = sum(len(r.output_token_ids) for r in reqs)
    rows.append(
        Row("burst of 1,000 ShareGPT: output tokens/s", "6,582.87 tok/s", f"{out_tok / span:,.0f} tok/s")
    )
    itls = _all_itls(profile, _sharegpt(random.Random(7), 1_000, None))
    rows.append(
        Row("burst of 1,000 ShareGPT: median ITL", "25.44 ms", f"{statistics.median(itls) * ms:.2f} ms")
    )
    rows.append(
        Row(
            "burst of 1,000 ShareGPT: mean TTFT",
            "9,626 ms",
            f"{statistics.mean(map(_ttft, reqs)) * ms:,.0f} ms",
        )
    )

    # 7. V1 ShareGPT mean e2e latency vs QPS (Poisson arrivals, 1,000 requests per point).
    for rate, e2e_pub in ((1, 1.7), (20, 2.0), (40, 2.8), (50, 3.9), (60, 7.1), (70, 13.5)):
        reqs = _open_loop(profile, _sharegpt(random.Random(rate), 1_000, float(rate)))
        rows.append(
            Row(
                f"ShareGPT e2e latency at QPS {rate} (V1)",
                f"≈{e2e_pub} s",
                f"{statistics.mean(map(_e2e, reqs)):.1f} s",
            )
        )

    # 8. v0.6.0 ShareGPT TPOT vs QPS (older vLLM, Llama-3-8B).
    for qps, tpot_pub in ((4.0, "≈8"), (32.0, "≈14"), (None, "≈57")):
        reqs = _open_loop(profile, _sharegpt(random.Random(11), 1_000, qps))
        label = "inf" if qps is None else f"{qps:g}"
        tpot = statistics.median(_itl(r) for r in reqs if len(r.output_token_ids) > 1)
        rows.append(
            Row(f"ShareGPT median TPOT at QPS {label} (v0.6.0)", f"{tpot_pub} ms", f"{tpot * ms:.1f} ms")
        )

    # 9. CI latency test: batch 8, 32 in / 128 out.
    reqs = _open_loop(profile, [(0.0, 32, 128)] * 8)
    rows.append(
        Row("CI latency: batch 8, 32 in / 128 out", "997.5 ms", f"{max(map(_e2e, reqs)) * ms:.1f} ms")
    )
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


def render(rows: list[Row]) -> str:
    lines = ["| published figure | published | simulator |", "|---|---|---|"]
    lines += [f"| {r.figure} | {r.published} | {r.simulated} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="llama-3.1-8b-h100")
    args = parser.parse_args()
    print(render(calibrate(load_profile(args.profile))))


if __name__ == "__main__":
    main()
