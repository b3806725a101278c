"""round-robin-picker: take endpoints in turn, ignoring scores (the other baseline)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inferpool.scheduling.types import ScoredEndpoint
from inferpool.state import Endpoint


@dataclass
class RoundRobinPicker:
    """Candidates sorted by name, rotated by a counter that advances once per pick.

    Sorting by name keeps the turn order stable when the candidate set is filtered or
    reshuffled between requests.
    """

    name: str = "round-robin-picker"
    _next: int = 0

    def pick(self, scored: list[ScoredEndpoint]) -> list[ScoredEndpoint]:
        return [scored[i] for i in self.rank([s.endpoint for s in scored], [s.total for s in scored])]

    def rank(self, endpoints: Sequence[Endpoint], totals: Sequence[float]) -> list[int]:
        if not endpoints:
            return []
        ordered = sorted(range(len(endpoints)), key=lambda i: endpoints[i].name)
        start = self._next % len(ordered)
        self._next += 1
        return ordered[start:] + ordered[:start]
