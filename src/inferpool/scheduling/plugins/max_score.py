"""max-score-picker: highest total first; equal totals in random order so ties spread load."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat, starmap

from inferpool.scheduling.types import ScoredEndpoint
from inferpool.state import Endpoint


@dataclass
class MaxScorePicker:
    """Orders by (total, a fresh random draw, position) descending, one draw per candidate.

    Sorted with a key (no tuple per candidate): by total alone when no two totals are
    equal, else by draw and then, stably, by total. Totals must not be NaN (the scheduler's
    never are).
    """

    name: str = "max-score-picker"
    rng: random.Random = field(default_factory=random.Random)

    def pick(self, scored: list[ScoredEndpoint]) -> list[ScoredEndpoint]:
        order = self.rank([s.endpoint for s in scored], [s.total for s in scored])
        return [scored[i] for i in order]

    def rank(self, endpoints: Sequence[Endpoint], totals: Sequence[float]) -> list[int]:
        count = len(totals)
        draws = list(starmap(self.rng.random, repeat((), count)))
        if len(set(totals)) == count:  # no ties: the draws decide nothing
            return sorted(range(count), key=totals.__getitem__, reverse=True)
        # Stable sorts keep the input order of equal keys: positions from the last, by draw,
        # then by total, gives (total, draw, position) descending.
        order = sorted(range(count - 1, -1, -1), key=draws.__getitem__, reverse=True)
        order.sort(key=totals.__getitem__, reverse=True)
        return order
