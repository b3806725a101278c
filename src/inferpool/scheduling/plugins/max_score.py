"""max-score-picker: highest total first; equal totals in random order so ties spread load."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from inferpool.scheduling.types import ScoredEndpoint


@dataclass
class MaxScorePicker:
    name: str = "max-score-picker"
    rng: random.Random = field(default_factory=random.Random)

    def pick(self, scored: list[ScoredEndpoint]) -> list[ScoredEndpoint]:
        rand = self.rng.random
        keyed = sorted(((s.total, rand(), i) for i, s in enumerate(scored)), reverse=True)
        return [scored[i] for _, _, i in keyed]
