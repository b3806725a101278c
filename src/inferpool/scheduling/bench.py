"""Picker throughput: scheduling decisions per second by pool size and prompt size.

    python -m inferpool.scheduling.bench [--profile default] [--seconds 1.0] [--max-blocks N]
    python -m inferpool.scheduling.bench --decisions N --endpoints 100 --prompt-kb 8

`--decisions N` runs exactly N decisions per cell instead of timing them, for instruction
counts that the machine's load cannot skew: run it under `valgrind --tool=callgrind` with
N and with 0, and divide the difference by N.

Each decision is one `schedule()` over the whole pool for a fresh request (so the prompt
is hashed every time) followed by `on_routed()` (the prefix index update). The pool has
varied load, and a warm prefix index: earlier requests sharing the prompt's document were
routed to a few endpoints, as in a real chat or RAG workload.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from inferpool.scheduling.config import build_scheduler, builtin_config_text, builtin_profile, parse_config
from inferpool.scheduling.framework import Scheduler
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint, EndpointMetrics

ENDPOINT_COUNTS = (10, 100, 1000)
PROMPT_SIZES = (8 * 1024, 220 * 1024)


@dataclass(frozen=True)
class BenchRow:
    endpoints: int
    prompt_chars: int
    decisions: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.decisions / self.seconds

    @property
    def micros(self) -> float:
        return 1e6 * self.seconds / self.decisions


def make_pool(count: int, rng: random.Random) -> list[Endpoint]:
    """`count` endpoints with varied queue, KV-cache use and in-flight counts."""
    pool = []
    for i in range(count):
        metrics = EndpointMetrics(
            waiting_queue_size=rng.randrange(0, 20),
            running_requests=rng.randrange(0, 64),
            kv_cache_usage=rng.random() * 0.9,
            cache_block_size=16,
            cache_num_blocks=8192,
            scraped_at=time.monotonic(),
        )
        pool.append(
            Endpoint(
                name=f"vllm-{i}",
                address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                port=8000,
                pool="default/bench",
                metrics=metrics,
                in_flight=rng.randrange(0, 16),
            )
        )
    return pool


def make_document(chars: int, rng: random.Random) -> str:
    words = ["alpha", "beta", "gamma", "delta", "kv", "cache", "prefix", "token", "route", "pool"]
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(words)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:chars]


def scheduler_for(profile: str, max_blocks: int | None) -> Scheduler:
    text = builtin_config_text(profile)
    if max_blocks is not None:
        text = text.replace(
            "- type: prefix-cache-scorer\n",
            f"- type: prefix-cache-scorer\n  parameters: {{maxPrefixBlocksToMatch: {max_blocks}}}\n",
        )
    config = parse_config(text, profile)
    return build_scheduler(config, builtin_profile(config, profile), profile)


def bench_one(
    count: int,
    prompt_chars: int,
    *,
    profile: str = "default",
    seconds: float = 1.0,
    max_blocks: int | None = None,
    decisions: int | None = None,
) -> BenchRow:
    """Time decisions for `seconds` (at least 3), or run exactly `decisions` of them."""
    rng = random.Random(count * 31 + prompt_chars)
    scheduler = scheduler_for(profile, max_blocks)
    pool = make_pool(count, rng)
    documents = [make_document(prompt_chars, rng) for _ in range(4)]
    seq = 0

    def request() -> SchedulingRequest:
        nonlocal seq
        seq += 1
        doc = documents[seq % len(documents)]
        prompt = f"{doc}\nQuestion {seq}?"
        return SchedulingRequest(
            f"b{seq}", "default/bench", "llama", prompt, prompt_tokens_estimate=len(prompt) // 4
        )

    for _ in range(min(count, 20)):  # warm the index: each document cached on a few endpoints
        r = request()
        scheduler.on_routed(r, rng.choice(pool))
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        if decisions is not None and done >= decisions:
            return BenchRow(count, prompt_chars, done, time.perf_counter() - start)
        r = request()
        result = scheduler.schedule(r, pool)
        scheduler.on_routed(r, result.ranked[0].endpoint)
        done += 1
        now = time.perf_counter()
        if decisions is None and now >= deadline and done >= 3:
            return BenchRow(count, prompt_chars, done, now - start)


def run(
    counts: Sequence[int] = ENDPOINT_COUNTS,
    sizes: Sequence[int] = PROMPT_SIZES,
    *,
    profile: str = "default",
    seconds: float = 1.0,
    max_blocks: int | None = None,
    decisions: int | None = None,
) -> list[BenchRow]:
    return [
        bench_one(c, s, profile=profile, seconds=seconds, max_blocks=max_blocks, decisions=decisions)
        for c in counts
        for s in sizes
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per cell")
    parser.add_argument("--max-blocks", type=int, default=None, help="override maxPrefixBlocksToMatch")
    parser.add_argument("--decisions", type=int, default=None, help="run exactly this many per cell, untimed")
    parser.add_argument("--endpoints", type=int, action="append", help="pool size (repeatable)")
    parser.add_argument("--prompt-kb", type=int, action="append", help="prompt size in KB (repeatable)")
    args = parser.parse_args(argv)
    counts = args.endpoints or ENDPOINT_COUNTS
    sizes = [kb * 1024 for kb in args.prompt_kb] if args.prompt_kb else PROMPT_SIZES
    blocks = "256 (default)" if args.max_blocks is None else str(args.max_blocks)
    print(f"profile {args.profile}, maxPrefixBlocksToMatch {blocks}, one schedule()+on_routed() per decision")
    print(f"{'endpoints':>9}  {'prompt':>8}  {'decisions/s':>12}  {'µs/decision':>12}")
    rows = run(
        counts,
        sizes,
        profile=args.profile,
        seconds=args.seconds,
        max_blocks=args.max_blocks,
        decisions=args.decisions,
    )
    for row in rows:
        if row.decisions == 0:
            continue
        print(
            f"{row.endpoints:>9}  {row.prompt_chars // 1024:>6}KB  {row.per_second:>12,.0f}  {row.micros:>12,.1f}"
        )


if __name__ == "__main__":
    main()
