"""A long text is screened in a worker thread (screen.OFFLOAD_CHARS): the event loop keeps
running the other requests meanwhile. Screened inline, a 16 MiB body made to be costly held the
loop, and every stream on it, for seconds."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from inferpool.guard import Screener, Stage
from inferpool.guard.policy import default_config
from inferpool.guard.rewrites import REWRITES
from inferpool.guard.screen import OFFLOAD_CHARS

CATALOGUE = Path(__file__).resolve().parents[2] / "data" / "guard" / "eval" / "catalogue.jsonl"


@pytest.mark.asyncio
async def test_the_loop_runs_while_a_long_text_is_screened() -> None:
    rows = [json.loads(line) for line in CATALOGUE.read_text().splitlines()]
    benign = [r["text"] for r in rows if r["label"] == "benign"]
    text = REWRITES["full-width"]("\n".join(benign * 40))  # ≈1 MB, every word disguised
    assert len(text) >= 10 * OFFLOAD_CHARS
    screener = Screener(default_config())
    gaps: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    verdict = await screener.screen_async(text, Stage.PROMPT)
    took = time.perf_counter() - started
    done.set()
    await ticker
    assert not verdict.blocked
    # the screen takes hundreds of milliseconds; the loop is never held for a third of it
    assert took > 0.15, took
    assert max(gaps) < took / 3, (max(gaps), took)
