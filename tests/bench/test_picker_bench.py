"""Picker throughput with pytest-benchmark: few rounds, figures printed, nothing asserted on time."""

from __future__ import annotations

import random

import pytest

from inferpool.scheduling.bench import bench_one, make_document, make_pool, scheduler_for
from inferpool.scheduling.plugins.prefix_index import block_hashes
from inferpool.scheduling.types import SchedulingRequest


@pytest.mark.parametrize("endpoints", [10, 100, 1000])
@pytest.mark.parametrize("prompt_kb", [8, 220])
def test_default_profile_decision(benchmark, endpoints: int, prompt_kb: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(endpoints)
    scheduler = scheduler_for("default", None)
    pool = make_pool(endpoints, rng)
    document = make_document(prompt_kb * 1024, rng)
    seq = iter(range(10**9))

    def decide() -> str:
        n = next(seq)
        req = SchedulingRequest(f"r{n}", "default/bench", "llama", f"{document}\nQuestion {n}?")
        result = scheduler.schedule(req, pool)
        scheduler.on_routed(req, result.ranked[0].endpoint)
        return result.ranked[0].endpoint.name

    name = benchmark.pedantic(decide, rounds=20, iterations=1, warmup_rounds=2)
    assert name.startswith("vllm-")


@pytest.mark.parametrize("prompt_kb", [8, 220])
def test_prompt_hashing(benchmark, prompt_kb: int) -> None:  # type: ignore[no-untyped-def]
    prompt = make_document(prompt_kb * 1024, random.Random(0))
    hashes = benchmark.pedantic(block_hashes, args=(prompt, "llama", 64, 256), rounds=20, iterations=5)
    assert len(hashes) == min(256, len(prompt) // 64)


def test_decisions_per_second_table(capsys: pytest.CaptureFixture[str]) -> None:
    """The figures the issue asks for, printed (run with -s to see them)."""
    rows = [bench_one(c, kb * 1024, seconds=0.2) for c in (10, 100, 1000) for kb in (8, 220)]
    with capsys.disabled():
        print("\nendpoints  prompt  decisions/s (default profile, schedule+on_routed)")
        for row in rows:
            print(f"{row.endpoints:>9}  {row.prompt_chars // 1024:>4}KB  {row.per_second:>10,.0f}")
    assert all(row.decisions >= 3 for row in rows)
