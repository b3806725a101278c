"""queue-scorer: prefer endpoints with fewer requests waiting in the model server's queue."""

from __future__ import annotations

from dataclasses import dataclass

from inferpool.scheduling.plugins.normalize import inverse_minmax
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint


@dataclass
class QueueScorer:
    """score = (max_q − q) / (max_q − min_q) over the candidates; 1 for all when equal."""

    name: str = "queue-scorer"

    def score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]:
        return dict(zip(endpoints, self.score_column(req, endpoints), strict=True))

    def score_column(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[float]:
        return inverse_minmax([e.metrics.waiting_queue_size for e in endpoints])
