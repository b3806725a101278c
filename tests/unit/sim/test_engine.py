"""Engine rules in virtual time: prefix caching, preemption, LoRA slots, queueing, step cost."""

from __future__ import annotations

import itertools

import pytest

from inferpool.sim.engine import Engine, SimRequest, StepReport
from inferpool.sim.profile import HardwareProfile, load_profile
from inferpool.tokenization import EOS_ID

NO_CPU = {"frontend_per_request_ms": 0, "frontend_per_output_token_ms": 0, "engine_per_step_ms": 0,
          "engine_per_request_ms": 0, "engine_per_waiting_ms": 0}  # fmt: skip


def _profile(**kw: object) -> HardwareProfile:
    """The built-in profile; without CPU costs unless `cpu` is given (most tests check GPU-side rules)."""
    base = load_profile("llama-3.1-8b-h100").model_dump()
    base.update(name="test", cpu=NO_CPU)
    base.update(**kw)
    return HardwareProfile.model_validate(base)


def _req(engine: Engine, rid: str, text: str, max_tokens: int = 8, **kw: object) -> SimRequest:
    req = SimRequest(rid, engine.tokenizer.encode(text), max_tokens, **kw)  # type: ignore[arg-type]
    engine.add_request(req)
    return req


def test_shared_prefix_is_cached_the_second_time() -> None:
    engine = Engine(_profile())
    prefix = "item lorem ipsum dolor sit amet. " * 40
    first = _req(engine, "a", prefix + "Question one?", ignore_eos=True)
    engine.run_until_idle()
    second = _req(engine, "b", prefix + "Question two?", ignore_eos=True)
    engine.run_until_idle()
    assert first.num_cached_tokens == 0
    assert second.num_cached_tokens > 0
    assert second.num_cached_tokens % 16 == 0
    shared = 0
    for x, y in zip(first.prompt_token_ids, second.prompt_token_ids, strict=False):
        if x != y:
            break
        shared += 1
    assert second.num_cached_tokens == (shared // 16) * 16


def test_adapter_is_part_of_the_cache_key() -> None:
    engine = Engine(_profile(), max_loras=2)
    prompt = "a long shared system prompt for the food review assistant " * 10
    _req(engine, "a", prompt, lora="food-review")
    engine.run_until_idle()
    other = _req(engine, "b", prompt, lora="cad-fabricator")
    same = _req(engine, "c", prompt + " more", lora="food-review")
    engine.run_until_idle()
    assert other.num_cached_tokens == 0
    assert same.num_cached_tokens > 0


def test_freed_blocks_stay_cached_until_their_slot_is_reused() -> None:
    engine = Engine(_profile(num_gpu_blocks=40, max_model_len=600))
    prompt = "word " * 200  # 13 blocks
    _req(engine, "a", prompt, max_tokens=4)
    engine.run_until_idle()
    hit = _req(engine, "b", prompt + "x", max_tokens=4)
    engine.run_until_idle()
    assert hit.num_cached_tokens >= 192
    # Fill the pool with unrelated prompts: LRU eviction drops the old prefix.
    for i in range(4):
        _req(engine, f"f{i}", f"filler {i} " * 150, max_tokens=2)
        engine.run_until_idle()
    miss = _req(engine, "c", prompt + "y", max_tokens=4)
    engine.run_until_idle()
    assert miss.num_cached_tokens < hit.num_cached_tokens


def test_kv_exhaustion_preempts_newest_and_waiting_grows() -> None:
    engine = Engine(_profile(num_gpu_blocks=64, max_model_len=1000))
    preempted = 0
    max_waiting = 0

    def on_step(report: StepReport) -> None:
        nonlocal preempted, max_waiting
        preempted += report.num_preempted
        max_waiting = max(max_waiting, engine.num_waiting)

    engine.step_hooks.append(on_step)
    reqs = [_req(engine, f"r{i}", f"request number {i} asks something", max_tokens=300, ignore_eos=True)
            for i in range(8)]  # fmt: skip
    engine.run_until_idle()
    assert preempted > 0
    assert max_waiting > 0
    assert all(r.finish_reason == "length" and len(r.output_token_ids) == 300 for r in reqs)
    assert any(r.num_preemptions > 0 for r in reqs)
    assert reqs[0].num_preemptions == 0  # the oldest keeps running
    assert engine.pool.usage() == 0.0  # all references released


def test_max_loras_one_alternates_adapters() -> None:
    engine = Engine(_profile(), max_loras=1, max_cpu_loras=4)
    batches: list[set[str]] = []
    engine.step_hooks.append(lambda r: batches.append({q.lora for q in engine.running if q.lora}))
    for i in range(6):
        _req(engine, f"r{i}", f"hello {i}", max_tokens=20, ignore_eos=True, lora="a" if i % 2 == 0 else "b")
    engine.step()
    assert engine.num_deferred() == 3  # the b requests wait while a holds the only slot
    engine.run_until_idle()
    assert all(len(b) <= 1 for b in batches)
    order = [next(iter(b)) for b in batches if b]
    assert order[0] == "a" and "b" in order
    switches = sum(1 for x, y in itertools.pairwise(order) if x != y)
    assert switches == 1


def test_max_loras_two_batches_together() -> None:
    engine = Engine(_profile(), max_loras=2)
    for i in range(4):
        _req(engine, f"r{i}", f"hello {i}", max_tokens=10, ignore_eos=True, lora="a" if i % 2 else "b")
    engine.step()
    assert {r.lora for r in engine.running} == {"a", "b"}
    assert engine.num_waiting == 0


def test_ttft_grows_with_queue_depth() -> None:
    ttfts = []
    for depth in (1, 16, 64):
        engine = Engine(_profile(max_num_batched_tokens=2048))
        reqs = [_req(engine, f"r{i}", f"prompt {i} " + "context " * 400, max_tokens=4) for i in range(depth)]
        engine.run_until_idle()
        ttfts.append(max(r.first_token_time - r.arrival_time for r in reqs))  # type: ignore[operator]
    assert ttfts[0] < ttfts[1] < ttfts[2]


def test_step_time_matches_the_fitted_formula() -> None:
    engine = Engine(_profile())
    req = _req(engine, "a", "hi", max_tokens=3, ignore_eos=True)
    reports = []
    engine.step_hooks.append(reports.append)
    engine.run_until_idle()
    assert reports[0].duration == pytest.approx(0.0064, rel=0.01)
    assert req.finish_time == pytest.approx(3 * 0.0064, rel=0.02)


def test_ten_thousand_token_prompt_ttft_near_published() -> None:
    engine = Engine(_profile())
    req = SimRequest("a", list(range(3, 10003)), 1)
    engine.add_request(req)
    engine.run_until_idle()
    assert req.first_token_time is not None
    assert 0.2 < req.first_token_time < 0.33  # published ≈0.26 s


def test_ignore_eos_gives_exactly_max_tokens_and_eos_gives_stop() -> None:
    engine = Engine(_profile(output_len={"median": 5, "sigma": 0.1, "min": 1, "max": 4096}))
    fixed = _req(engine, "a", "hello", max_tokens=50, ignore_eos=True)
    natural = _req(engine, "b", "hello there", max_tokens=50)
    capped = _req(engine, "c", "hello again", max_tokens=2)
    engine.run_until_idle()
    assert (len(fixed.output_token_ids), fixed.finish_reason) == (50, "length")
    assert natural.finish_reason == "stop" and natural.output_token_ids[-1] == EOS_ID
    assert len(natural.output_token_ids) < 50
    assert (len(capped.output_token_ids), capped.finish_reason) == (2, "length")


def test_context_length_caps_output() -> None:
    engine = Engine(_profile(max_model_len=64))
    req = _req(engine, "a", "x " * 20, max_tokens=1000, ignore_eos=True)
    engine.run_until_idle()
    assert req.num_prompt_tokens + len(req.output_token_ids) == 64


def test_output_is_deterministic_for_a_seed() -> None:
    texts = []
    for seed in (7, 7, 8):
        engine = Engine(_profile(), seed=seed)
        req = _req(engine, "a", "tell me a story", max_tokens=30, ignore_eos=True)
        engine.run_until_idle()
        texts.append(req.output_text)
    assert texts[0] == texts[1] != texts[2]


def test_stop_string_ends_with_stop_reason() -> None:
    engine = Engine(_profile())
    probe = _req(engine, "p", "tell me", max_tokens=40, ignore_eos=True)
    engine.run_until_idle()
    word = probe.output_text.split()[3]
    req = _req(engine, "a", "tell me", max_tokens=40, ignore_eos=True, stop=(word,))
    engine.run_until_idle()
    assert req.finish_reason == "stop" and req.stop_reason == word
    assert word not in req.output_text


def test_lora_swap_costs_time() -> None:
    engine = Engine(_profile(), max_loras=1)
    reports: list[StepReport] = []
    engine.step_hooks.append(reports.append)
    _req(engine, "a", "hi", max_tokens=1, lora="a")
    engine.run_until_idle()
    _req(engine, "b", "hi", max_tokens=1)
    engine.run_until_idle()
    assert reports[0].loaded_loras == ["a"]
    assert reports[0].duration > reports[1].duration + 0.04


def test_abort_frees_blocks() -> None:
    engine = Engine(_profile())
    req = _req(engine, "a", "hello " * 100, max_tokens=100, ignore_eos=True)
    engine.step()
    assert engine.pool.usage() > 0
    engine.abort("a")
    assert req.finish_reason == "abort" and not engine.has_work()
    assert engine.pool.usage() == 0.0


def test_advance_moves_virtual_time_without_work() -> None:
    engine = Engine(_profile())
    engine.advance(2.5)
    assert engine.clock.now() == pytest.approx(2.5)
    req = _req(engine, "a", "hi", max_tokens=5, ignore_eos=True)
    engine.advance(1.0)
    assert req.finish_time is not None and 2.5 < req.finish_time < 2.6
