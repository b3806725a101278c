"""Cost of screening with the default checks (redact PII, block secrets and injection).

Prompts are built from the benign half of the frozen guard catalogue: "chat" from product
questions, multilingual text, security discussions and code; "logs" from log lines, versions,
dates and part numbers (digit-heavy: most number-based PII candidates go to the validators).
Runs in `make test` with few rounds and prints the figures (no timing assertions; the
issue's targets and the measured times are in docs/benchmarks.md). Run alone with
`pytest tests/bench/test_guard_bench.py -s` to see them.
"""

from __future__ import annotations

import asyncio
import json
import random
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from inferpool.guard import Screener, Stage
from inferpool.guard.openai import StreamScreener
from inferpool.guard.policy import default_config

CATALOGUE = Path(__file__).resolve().parents[1] / "data" / "guard" / "eval" / "catalogue.jsonl"
KINDS = {
    "chat": {"product", "multilingual", "security_discussion", "code"},
    "logs": {"log", "version", "date", "part_number"},
}


def benign(kinds: set[str]) -> list[str]:
    rows = [json.loads(line) for line in CATALOGUE.read_text().splitlines()]
    return [r["text"] for r in rows if r["label"] == "benign" and r["kind"] in kinds]


def prompt(kind: str, size: int, seed: int = 17) -> str:
    rng, texts, out, length = random.Random(seed), benign(KINDS[kind]), [], 0
    while length < size:
        out.append(rng.choice(texts))
        length += len(out[-1]) + 1
    return "\n".join(out)[:size]


def per_call(fn: Callable[[], Any], calls: int, repeats: int = 5) -> float:
    """Seconds per call: the best of `repeats` batches (least disturbed by a busy machine)."""
    return min(timeit.timeit(fn, number=calls) for _ in range(repeats)) / calls


@pytest.mark.parametrize(("kind", "size", "calls"), [("chat", 2048, 200), ("logs", 2048, 100),
                                                     ("chat", 102_400, 5), ("logs", 102_400, 3)])  # fmt: skip
def test_screen_prompt(kind: str, size: int, calls: int, capsys: pytest.CaptureFixture[str]) -> None:
    screener = Screener(default_config())
    text = prompt(kind, size)
    verdict = screener.screen(text, Stage.PROMPT)
    assert not verdict.blocked, verdict.reason  # benign text: a block here is a false positive
    seconds = per_call(lambda: screener.screen(text, Stage.PROMPT), calls)
    with capsys.disabled():
        print(f"\n[bench] guard {kind} prompt {size / 1024:.0f} KB: {seconds * 1e6:.0f} us")


def sse_events(text: str, chars: int = 4) -> list[bytes]:
    return [
        b"data: "
        + orjson.dumps({"choices": [{"index": 0, "delta": {"content": text[i : i + chars]}}]})
        + b"\n\n"
        for i in range(0, len(text), chars)
    ]


@pytest.mark.parametrize("kind", ["chat", "logs"])
def test_stream_event(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    screener = Screener(default_config())
    events = sse_events(prompt(kind, 16_384, seed=3))

    async def run() -> float:
        stream = StreamScreener(screener, "m")
        start = timeit.default_timer()
        for event in events:
            await stream.feed(event)
        return (timeit.default_timer() - start) / len(events)

    seconds = min(asyncio.run(run()) for _ in range(3))
    with capsys.disabled():
        print(f"\n[bench] guard stream event ({kind} answer, 4 chars per event): {seconds * 1e6:.1f} us")
