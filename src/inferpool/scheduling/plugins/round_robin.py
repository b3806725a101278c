"""round-robin-picker: take endpoints in turn, ignoring scores (the other baseline)."""

from __future__ import annotations

from dataclasses import dataclass

from inferpool.scheduling.types import ScoredEndpoint


@dataclass
class RoundRobinPicker:
    """Candidates sorted by name, rotated by a counter that advances once per pick.

    Sorting by name keeps the turn order stable when the candidate set is filtered or
    reshuffled between requests.
    """

    name: str = "round-robin-picker"
    _next: int = 0

    def pick(self, scored: list[ScoredEndpoint]) -> list[ScoredEndpoint]:
        if not scored:
            return []
        ordered = sorted(scored, key=lambda s: s.endpoint.name)
        start = self._next % len(ordered)
        self._next += 1
        return ordered[start:] + ordered[:start]
