"""max-score-picker: highest total first; equal totals in random order so ties spread load."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress, islice, repeat, starmap
from operator import eq

from inferpool.scheduling.types import ScoredEndpoint
from inferpool.state import Endpoint


@dataclass
class MaxScorePicker:
    """Orders by (total, a fresh random draw) descending: one draw per candidate, in input order.

    Sorting bare totals and then re-sorting only the runs of equal totals by their draws
    gives that same order without building a tuple per candidate.
    """

    name: str = "max-score-picker"
    rng: random.Random = field(default_factory=random.Random)

    def pick(self, scored: list[ScoredEndpoint]) -> list[ScoredEndpoint]:
        order = self.rank([s.endpoint for s in scored], [s.total for s in scored])
        return [scored[i] for i in order]

    def rank(self, endpoints: Sequence[Endpoint], totals: Sequence[float]) -> list[int]:
        count = len(totals)
        draws = list(starmap(self.rng.random, repeat((), count)))
        order = sorted(range(count), key=totals.__getitem__, reverse=True)
        ranked = list(map(totals.__getitem__, order))
        # Positions k where ranked[k] == ranked[k + 1]: only there do the draws decide.
        tied = list(compress(range(count - 1), map(eq, ranked, islice(ranked, 1, None))))
        if tied:
            start = end = tied[0]
            for k in islice(tied, 1, None):
                if k != end + 1:
                    _by_draw(order, draws, start, end + 2)
                    start = k
                end = k
            _by_draw(order, draws, start, end + 2)
        return order


def _by_draw(order: list[int], draws: list[float], lo: int, hi: int) -> None:
    """Re-sort the tied run order[lo:hi] by (draw, position) descending, in place."""
    run = order[lo:hi]
    order[lo:hi] = [i for _, i in sorted(zip([draws[i] for i in run], run, strict=True), reverse=True)]
