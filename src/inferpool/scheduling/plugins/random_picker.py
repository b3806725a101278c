"""random-picker: a uniformly random order, ignoring scores (what a Kubernetes Service does)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from inferpool.scheduling.types import ScoredEndpoint
from inferpool.state import Endpoint


@dataclass
class RandomPicker:
    name: str = "random-picker"
    rng: random.Random = field(default_factory=random.Random)

    def pick(self, scored: list[ScoredEndpoint]) -> list[ScoredEndpoint]:
        return [scored[i] for i in self.rank([s.endpoint for s in scored], [s.total for s in scored])]

    def rank(self, endpoints: Sequence[Endpoint], totals: Sequence[float]) -> list[int]:
        order = list(range(len(endpoints)))
        self.rng.shuffle(order)  # the permutation depends only on the length and the generator
        return order
