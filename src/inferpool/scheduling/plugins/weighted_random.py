"""weighted-random-picker: pick with probability proportional to the total score."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from inferpool.scheduling.types import ScoredEndpoint
from inferpool.state import Endpoint


@dataclass
class WeightedRandomPicker:
    """A weighted random order without replacement (Efraimidis–Spirakis keys log(u)/w).

    The first entry is endpoint i with probability w_i / Σw; the rest are fallbacks drawn
    the same way. Zero-score endpoints come last, in random order; if every score is 0 the
    pick is uniform.
    """

    name: str = "weighted-random-picker"
    rng: random.Random = field(default_factory=random.Random)

    def pick(self, scored: list[ScoredEndpoint]) -> list[ScoredEndpoint]:
        return [scored[i] for i in self.rank([s.endpoint for s in scored], [s.total for s in scored])]

    def rank(self, endpoints: Sequence[Endpoint], totals: Sequence[float]) -> list[int]:
        rand = self.rng.random
        # Weights relative to the largest: log(u)/w must not overflow to -inf for tiny
        # (even denormal) scores, or every such endpoint would tie and the index would decide.
        top = max(totals, default=0.0)
        keys = []
        for i, total in enumerate(totals):
            u = 1.0 - rand()  # (0, 1]: log is finite
            weight = total / top if top > 0 else 0.0  # underflows to 0 only when negligible
            if weight > 0:
                keys.append((0, math.log(u) / weight, i))
            else:
                keys.append((-1, u, i))
        keys.sort(reverse=True)
        return [i for _, _, i in keys]
