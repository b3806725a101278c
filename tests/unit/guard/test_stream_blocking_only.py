"""The streamed answer's window re-screen runs only the blocking checks; nothing it decides may
change. Every catalogue text (harmful and benign), each between benign text and streamed in
events of 1 to 7 characters, gives the same bytes, the same block and the same reason as the full
screen of every window (what each step of a response hook runs, here at every event). Budget: ≈5 s."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import orjson

from inferpool.guard import Screener
from inferpool.guard.openai import Blocked, StreamScreener
from inferpool.guard.policy import default_config

CATALOGUE = Path(__file__).resolve().parents[2] / "data" / "guard" / "eval" / "catalogue.jsonl"


def events(text: str, rng: random.Random) -> list[bytes]:
    out, at = [], 0
    while at < len(text):
        size = rng.randint(1, 7)
        delta = {"content": text[at : at + size]}
        out.append(b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": delta}]}) + b"\n\n")
        at += size
    return [*out, b"data: [DONE]\n\n"]


async def relay(stream: StreamScreener, chunks: list[bytes]) -> tuple[bytes, str | None]:
    sent = b""
    try:
        for chunk in chunks:
            sent += await stream.feed(chunk)
    except Blocked as blocked:
        return sent + blocked.passed, blocked.reason
    return sent, None


def test_blocking_only_window_screen_decides_as_the_full_screen() -> None:
    screener = Screener(default_config())
    rows = [json.loads(line) for line in CATALOGUE.read_text().splitlines()]
    benign = [r["text"] for r in rows if r["label"] == "benign"]
    rng = random.Random(5)
    blocked = 0
    for row in rows:
        text = f"{rng.choice(benign)} {row['text']} {rng.choice(benign)}"
        chunks = events(text, rng)
        fast = StreamScreener(screener, "m")
        full = StreamScreener(screener, "m")
        # the full screen of the recent words at every event: a hook's step, made 0 (no hook is
        # configured, so the step is the full screen alone)
        full._hooked, full._hook_step_chars = True, 0
        got, want = asyncio.run(relay(fast, chunks)), asyncio.run(relay(full, chunks))
        assert got == want, row["id"]
        blocked += want[1] is not None
    assert blocked >= 20  # the catalogue's secrets and injections do block in a stream
