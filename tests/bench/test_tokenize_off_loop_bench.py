"""How long the event loop stalls when a long prompt is seen for the first time, with the
precise-prefix scorer and a model's tokenizer.json: tokenized in place (`route`, what both data
planes did before) against before scheduling in a worker thread (`route_async`). A ticker task
that asks to wake every millisecond measures the loop's longest gap while the prompts are
routed one after another. docs/precise-prefix.md quotes these; nothing is asserted on time.
Budget: 10 s (most of it training the tokenizer).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import orjson
import pytest

from loop_stalls import stalls
from precise_picker import POOL, precise_core

tokenizers = pytest.importorskip("tokenizers")

# ≈1,800 made-up words of letters (the prefix store cuts prompts between two letters)
WORDS = [
    stem + a + b
    for stem in ("rout", "cach", "tok", "mod", "sauc", "kitch")
    for a in "aeiouy"
    for b in "bcdfghklmnprstvwxz"
]
PROMPTS = 6
PROMPT_WORDS = 3000  # ≈6,000 tokens with the tokenizer trained below, as issue 16's tenant contexts


def tokenizer_json(folder: Path) -> Path:
    """A byte-level BPE tokenizer.json (4,096 ids) trained on the prompts' own vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    rng = random.Random(7)
    text = " ".join(rng.choice(WORDS) for _ in range(50_000))
    tok.train_from_iterator(
        [text], trainers.BpeTrainer(vocab_size=4096, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    )
    path = folder / "tokenizer.json"
    tok.save(str(path))
    return path


def bodies(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [
        orjson.dumps({"model": "m", "prompt": " ".join(rng.choice(WORDS) for _ in range(PROMPT_WORDS))})
        for _ in range(PROMPTS)
    ]


def test_first_seen_prompts_stall_the_loop_less_off_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    core, scorer, _ = precise_core(tmp_path, tokenizer_json(tmp_path))
    director = core.director

    async def in_place() -> None:
        for body in bodies(1):
            director.route(POOL, "/v1/completions", {}, body).finish(200)
            await asyncio.sleep(0)

    async def off_loop() -> None:
        for body in bodies(2):  # other prompts: nothing of them is in the prefix store yet
            (await director.route_async(POOL, "/v1/completions", {}, body)).finish(200)

    async def both() -> list[tuple[float, float, float]]:
        return [await stalls(in_place), await stalls(off_loop)]

    figures = asyncio.run(both())
    # the second pass did tokenize in the worker thread (else both would measure the same path)
    assert scorer.tokenizer._worker is not None  # type: ignore[attr-defined]
    for label, (longest, blocked, run) in zip(("in place", "off the loop"), figures, strict=True):
        with capsys.disabled():
            print(
                f"\n[bench] {PROMPTS} first-seen ≈6,000-token prompts, precise-prefix, tokenizer.json, "
                f"tokenized {label}: longest loop stall {longest:.1f} ms, stalls beyond 2 ms "
                f"{blocked:.1f} ms in all, {run:.0f} ms for all"
            )
