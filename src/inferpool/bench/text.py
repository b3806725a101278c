"""Synthetic prompt text: common words, about one token each for real tokenizers and the simulator's."""

from __future__ import annotations

import random

_WORDS = (
    "the of and to in is that for it as with was on be by this are from at or an have not which but "
    "all they one can has more will their there about data time use when would what some them into "
    "other than then these two its first also new could only way may any like such most well after "
    "where very should through because each between make many does over same both under answer system "
    "token server cache value result using example simple state order input output review recipe "
    "flavor kitchen design part layer route pool queue batch prompt reply city river green light "
    "table paper music water stone cloud north south market price owner field story night early"
).split()


def words(n: int, rng: random.Random) -> str:
    """`n` random words joined by spaces (≈ n tokens)."""
    return " ".join(rng.choices(_WORDS, k=max(1, n)))


def lognormal_int(rng: random.Random, median: float, sigma: float, low: int, high: int) -> int:
    """A ShareGPT-shaped length: lognormal around `median`, clipped to [low, high]."""
    import math

    return max(low, min(high, round(rng.lognormvariate(math.log(median), sigma))))
