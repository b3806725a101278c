"""least-request-scorer: prefer endpoints with the fewest requests in flight from this gateway."""

from __future__ import annotations

from dataclasses import dataclass

from inferpool.scheduling.plugins.normalize import inverse_minmax
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint


@dataclass
class LeastRequestScorer:
    """score = min-max inverse of `in_flight` (the request core's own count, on every exit path)."""

    name: str = "least-request-scorer"

    def score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]:
        return dict(zip(endpoints, self.score_column(req, endpoints), strict=True))

    def score_column(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[float]:
        return inverse_minmax([e.in_flight for e in endpoints])
