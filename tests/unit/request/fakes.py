"""A tiny scheduler double for the Director's unit tests (the real one lives in inferpool.scheduling)."""

from __future__ import annotations

from dataclasses import dataclass, field

from inferpool.scheduling.types import SchedulingRequest, SchedulingResult, ScoredEndpoint
from inferpool.state import Endpoint


@dataclass
class FakeScheduler:
    """Ranks candidates by fewest in-flight requests and logs the hooks it receives."""

    profile: str = "fake"
    shed: bool = False
    drop_all: bool = False
    fail: bool = False
    seen: list[SchedulingRequest] = field(default_factory=list)
    routed: list[tuple[str, str]] = field(default_factory=list)
    completed: list[tuple[str, str]] = field(default_factory=list)

    def schedule(self, request: SchedulingRequest, candidates: list[Endpoint]) -> SchedulingResult:
        if self.fail:
            raise RuntimeError("plugin exploded")
        self.seen.append(request)
        if self.shed:
            return SchedulingResult(self.profile, [], {e.name: "legacy-shed" for e in candidates}, shed=True)
        if self.drop_all:
            return SchedulingResult(self.profile, [], {e.name: "lora-filter" for e in candidates})
        ranked = sorted(candidates, key=lambda e: (e.in_flight, e.name))
        return SchedulingResult(
            self.profile,
            [
                ScoredEndpoint(e, 1.0 / (1 + e.in_flight), {"least-request": 1.0 / (1 + e.in_flight)})
                for e in ranked
            ],
        )

    def on_routed(self, request: SchedulingRequest, endpoint: Endpoint) -> None:
        self.routed.append((request.request_id, endpoint.name))

    def on_completed(self, request: SchedulingRequest, endpoint: Endpoint) -> None:
        self.completed.append((request.request_id, endpoint.name))
