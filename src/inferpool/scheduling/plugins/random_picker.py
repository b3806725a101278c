"""random-picker: a uniformly random order, ignoring scores (what a Kubernetes Service does)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from inferpool.scheduling.types import ScoredEndpoint


@dataclass
class RandomPicker:
    name: str = "random-picker"
    rng: random.Random = field(default_factory=random.Random)

    def pick(self, scored: list[ScoredEndpoint]) -> list[ScoredEndpoint]:
        ordered = list(scored)
        self.rng.shuffle(ordered)
        return ordered
