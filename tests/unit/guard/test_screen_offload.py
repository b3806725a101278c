"""A long text is screened in a worker thread (screen.OFFLOAD_CHARS): the event loop keeps
running the other requests meanwhile. Screened inline, a 16 MiB body made to be costly held the
loop, and every stream on it, for seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inferpool.guard import Screener, Stage
from inferpool.guard.policy import default_config
from inferpool.guard.rewrites import REWRITES
from inferpool.guard.screen import OFFLOAD_CHARS
from loop_stalls import stalls

CATALOGUE = Path(__file__).resolve().parents[2] / "data" / "guard" / "eval" / "catalogue.jsonl"


@pytest.mark.asyncio
async def test_the_loop_runs_while_a_long_text_is_screened() -> None:
    rows = [json.loads(line) for line in CATALOGUE.read_text().splitlines()]
    benign = [r["text"] for r in rows if r["label"] == "benign"]
    text = REWRITES["full-width"]("\n".join(benign * 40))  # ≈1 MB, every word disguised
    assert len(text) >= 10 * OFFLOAD_CHARS
    screener = Screener(default_config())
    verdicts = []

    async def screen() -> None:
        verdicts.append(await screener.screen_async(text, Stage.PROMPT))

    longest, _beyond_2ms, took = await stalls(screen)
    (verdict,) = verdicts
    assert not verdict.blocked
    # the screen takes hundreds of milliseconds; the loop is never held for a third of it
    assert took > 150, took
    assert longest < took / 3, (longest, took)
