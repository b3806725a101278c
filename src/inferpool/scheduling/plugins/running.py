"""running-requests-scorer: prefer endpoints with fewer requests in the running batch."""

from __future__ import annotations

from dataclasses import dataclass

from inferpool.scheduling.plugins.normalize import inverse_minmax
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint


@dataclass
class RunningRequestsScorer:
    """score = (max_r − r) / (max_r − min_r) over the candidates; 1 for all when equal."""

    name: str = "running-requests-scorer"

    def score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]:
        return dict(zip(endpoints, self.score_column(req, endpoints), strict=True))

    def score_column(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[float]:
        return inverse_minmax([e.metrics.running_requests for e in endpoints])
