"""token-load-scorer: prefer endpoints this gateway has sent the fewest outstanding tokens."""

from __future__ import annotations

from dataclasses import dataclass

from inferpool.scheduling.plugins.normalize import inverse_minmax
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint


@dataclass
class TokenLoadScorer:
    """score = min-max inverse of `in_flight_tokens` (prompt + max_tokens of unfinished requests).

    The gateway's own count, never stale: it reacts within one request, where scraped
    metrics lag by a scrape interval and make bursts pile onto one endpoint.
    """

    name: str = "token-load-scorer"

    def score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]:
        return dict(zip(endpoints, self.score_column(req, endpoints), strict=True))

    def score_column(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[float]:
        return inverse_minmax([e.in_flight_tokens for e in endpoints])
