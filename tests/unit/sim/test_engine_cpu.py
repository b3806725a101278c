"""CPU costs outside the GPU step (profile key `cpu`): each mechanism moves time the way vLLM's does."""

from __future__ import annotations

import random
import statistics

import pytest

from inferpool.sim.calibrate import SHAREGPT_V060, SHAREGPT_V1, without_api_server
from inferpool.sim.engine import Engine, SimRequest, StepReport
from inferpool.sim.profile import HardwareProfile, load_profile

NO_CPU = {"frontend_per_request_ms": 0.0, "frontend_per_output_token_ms": 0.0, "engine_per_step_ms": 0.0,
          "engine_per_request_ms": 0.0, "engine_per_waiting_ms": 0.0,
          "frontend_per_metrics_scrape_ms": 0.0}  # fmt: skip


def _profile(**cpu: float) -> HardwareProfile:
    base = load_profile("llama-3.1-8b-h100").model_dump()
    base.update(name="test", cpu={**NO_CPU, **cpu})
    return HardwareProfile.model_validate(base)


def _add(
    engine: Engine, rid: str, n_prompt: int = 32, max_tokens: int = 4, lora: str | None = None
) -> SimRequest:
    req = SimRequest(rid, [3 + (hash(rid) + i) % 1000 for i in range(n_prompt)], max_tokens, lora=lora,
                     ignore_eos=True)  # fmt: skip
    engine.add_request(req)
    return req


def _second_step_seconds(profile: HardwareProfile, waiting: int) -> float:
    """One request on adapter a holds the only LoRA slot; `waiting` requests on b are skipped every step."""
    engine = Engine(profile, max_loras=1)
    _add(engine, "a", max_tokens=50, lora="a")
    engine.step()
    for i in range(waiting):
        _add(engine, f"b{i}", lora="b")
    report = engine.step()
    assert report is not None and engine.num_deferred() == waiting
    return report.duration


def test_step_time_grows_with_the_waiting_queue_the_scheduler_walks() -> None:
    profile = _profile(engine_per_waiting_ms=0.05)
    short, long = _second_step_seconds(profile, 10), _second_step_seconds(profile, 210)
    assert long - short == pytest.approx(200 * 0.05e-3, rel=1e-6)
    flat = _profile()
    assert _second_step_seconds(flat, 210) == pytest.approx(_second_step_seconds(flat, 10))


def test_engine_cpu_per_request_lengthens_large_batches() -> None:
    def step_with(profile: HardwareProfile, batch: int) -> float:
        engine = Engine(profile)
        for i in range(batch):
            _add(engine, f"r{i}", max_tokens=8)
        engine.step()  # prefill
        report = engine.step()  # all decode
        assert report is not None
        return report.duration

    cpu = _profile(engine_per_request_ms=0.03, engine_per_step_ms=0.7)
    gpu = _profile()
    assert step_with(cpu, 1) - step_with(gpu, 1) == pytest.approx(0.7e-3)  # the first request is in base_ms
    assert step_with(cpu, 101) - step_with(gpu, 101) == pytest.approx(0.7e-3 + 100 * 0.03e-3)


def test_api_server_work_per_request_delays_ttft_under_a_burst() -> None:
    def last_ttft(profile: HardwareProfile) -> float:
        engine = Engine(profile)
        reqs = [_add(engine, f"r{i}", max_tokens=2) for i in range(200)]
        engine.run_until_idle()
        return max(r.first_token_time - r.arrival_time for r in reqs)  # type: ignore[operator]

    without = last_ttft(_profile())
    with_frontend = last_ttft(_profile(frontend_per_request_ms=5.0))
    assert without < 0.5  # one prefill step of 6,400 tokens
    assert with_frontend >= 200 * 5e-3  # the 200th request waits behind 199 others in the API server


def test_detokenising_and_streaming_cost_per_token_delays_delivery() -> None:
    def first_tokens(profile: HardwareProfile, batch: int) -> list[float]:
        engine = Engine(profile)
        reqs = [_add(engine, f"r{i}") for i in range(batch)]
        steps: list[StepReport] = []
        engine.step_hooks.append(steps.append)
        engine.run_until_idle()
        return [r.first_token_time - (steps[0].start + steps[0].duration) for r in reqs]  # type: ignore[operator]

    assert max(first_tokens(_profile(), 40)) == pytest.approx(0.0, abs=1e-12)
    delays = first_tokens(_profile(frontend_per_output_token_ms=0.1), 40)
    assert statistics.mean(delays) == pytest.approx(40 * 0.1e-3)  # the step's 40 tokens, one after another


def test_a_request_reaches_the_engine_only_after_the_api_server() -> None:
    engine = Engine(_profile(frontend_per_request_ms=20.0))
    req = _add(engine, "a")
    report = engine.step()  # nothing is ready yet: the engine idles until the hand-over
    assert report is not None and report.start == pytest.approx(0.02)
    assert req.ready_time == pytest.approx(0.02)


def test_advance_does_not_run_past_a_request_still_in_the_api_server() -> None:
    engine = Engine(_profile(frontend_per_request_ms=20.0))
    req = _add(engine, "a")
    engine.advance(0.01)
    assert engine.clock.now() == pytest.approx(0.01) and req.num_computed_tokens == 0
    engine.advance(0.02)
    assert req.num_computed_tokens > 0


@pytest.mark.parametrize("lengths", [SHAREGPT_V1, SHAREGPT_V060])
def test_synthetic_sharegpt_means_match_the_published_sample(lengths: object) -> None:
    rng = random.Random(0)
    pairs = [lengths.draw(rng) for _ in range(20_000)]  # type: ignore[attr-defined]
    assert statistics.mean(p for p, _ in pairs) == pytest.approx(lengths.mean_in, rel=0.03)  # type: ignore[attr-defined]
    assert statistics.mean(o for _, o in pairs) == pytest.approx(lengths.mean_out, rel=0.03)  # type: ignore[attr-defined]
    assert all(4 <= p <= 1024 and o >= 4 and p + o <= 2048 for p, o in pairs)


def test_adapter_tokens_cost_their_own_per_token_time_on_top_of_the_factor() -> None:
    """`step.lora_per_token_ms`: a prefill with an adapter grows by that much per prompt token
    (the LoRA kernels run per token), a base-model prefill not at all."""

    def prefill_seconds(lora_per_token_ms: float, lora: str | None) -> float:
        data = _profile().model_dump()
        data["step"]["lora_per_token_ms"] = lora_per_token_ms
        engine = Engine(HardwareProfile.model_validate(data))
        _add(engine, "r", n_prompt=400, max_tokens=2, lora=lora)
        report = engine.step()
        assert report is not None
        return report.duration

    assert prefill_seconds(0.01, "a") - prefill_seconds(0.0, "a") == pytest.approx(400 * 0.01e-3, rel=1e-6)
    assert prefill_seconds(0.01, None) == pytest.approx(prefill_seconds(0.0, None))
    assert load_profile("llama-3.1-8b-h100").step.lora_per_token_ms == 0.0  # GPU profiles: unchanged


def test_a_metrics_render_in_the_api_server_delays_the_requests_queued_behind_it() -> None:
    """`cpu.frontend_per_metrics_scrape_ms`: a scrape's page is API-server work like a request's."""
    engine = Engine(_profile(frontend_per_request_ms=1.0))
    assert engine.frontend_work(8.0) == pytest.approx(0.008)
    req = _add(engine, "r")
    assert req.ready_time == pytest.approx(0.009)  # 8 ms of page, then its own 1 ms
    engine.run_until_idle()
    assert req.first_token_time is not None and req.first_token_time > 0.009


def test_rows_measured_without_de_tokenisation_run_without_the_api_server() -> None:
    """The kv-offloading post's single-request TTFT ran with "De/Tokenization disabled": the
    calibration replays it with no API-server work, on the same engine constants otherwise."""
    profile = load_profile("llama-3.1-8b-h100")
    bare = without_api_server(profile)
    assert bare.cpu.frontend_per_request_ms == 0.0 and bare.cpu.frontend_per_output_token_ms == 0.0
    assert bare.step == profile.step and bare.cpu.engine_per_step_ms == profile.cpu.engine_per_step_ms
    assert profile.cpu.frontend_per_request_ms > 0  # the profile itself is unchanged

    def ttft(p: HardwareProfile) -> float:
        engine = Engine(p)
        req = _add(engine, "a", n_prompt=1_000, max_tokens=1)
        engine.run_until_idle()
        return req.first_token_time - req.arrival_time  # type: ignore[operator]

    expected = (profile.cpu.frontend_per_request_ms + profile.cpu.frontend_per_output_token_ms) / 1000
    assert ttft(profile) - ttft(bare) == pytest.approx(expected)
