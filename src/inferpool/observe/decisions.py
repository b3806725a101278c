"""The decision log: the last N request records, and running per-model and per-endpoint counts.

Both views read the one RequestRecord each request ends in; `decision_view` is the JSON shape
of `/api/decisions` and the dashboard's decision list (docs/gateway.md, docs/dashboard.md).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from inferpool.records import RequestRecord


@dataclass(frozen=True)
class DashboardConfig:
    interval_s: float = 1.0  # sampling and push period
    window_s: float = 300.0  # how far back the time series and TTFT percentiles reach
    rate_window_s: float = 10.0  # request rate is averaged over this
    decisions: int = 50  # decisions sent with each snapshot
    ttft_samples: int = 5000  # per model, newest kept

    @property
    def points(self) -> int:
        return max(2, int(self.window_s / self.interval_s))


def finished_at(record: RequestRecord) -> float:
    """Wall-clock time the request ended."""
    return record.started_at + record.e2e_s


def is_shed(record: RequestRecord) -> bool:
    """Refused to protect the pool, not failed: admission's or flow control's refusals by their
    reason (a queue TTL's 503 too), and a tenant's rate-limit 429, refused before any endpoint was
    picked. An empty pool's 503 is an outage, counted with the errors."""
    if record.shed_reason is not None:
        return record.shed_reason != "no-ready-endpoints"
    return record.status == 429 and record.endpoint is None


def decision_view(record: RequestRecord) -> dict[str, Any]:
    """One `/api/decisions` entry: where the request went, the ranked candidates, and why."""
    return {
        "request_id": record.request_id,
        "pool": record.pool,
        "model": record.model,
        "target_model": record.target_model,
        "picked": record.endpoint,
        "status": record.status,
        "ranked": [
            {"endpoint": s.endpoint, "hostport": s.hostport, "total": s.total, "scores": dict(s.scores)}
            for s in record.scores
        ],
        "profile": record.profile,
        "ttft_s": record.ttft_s,
        "e2e_s": record.e2e_s,
        "attempts": record.attempts,
        "ts": finished_at(record),
        "filtered_out": dict(record.filtered_out),
        "error": record.error,
        "shed_reason": record.shed_reason,
        "shed": is_shed(record),
        "prefill": _prefill_view(record),
        # "GET /health": what the request was, where the body named no model (None: not known)
        "request": f"{record.http.method} {record.http.path}" if record.http is not None else None,
    }


def _prefill_view(record: RequestRecord) -> dict[str, Any] | None:
    """The prefill leg of a P/D request (None: the request was not split)."""
    leg = record.prefill
    if leg is None:
        return None
    return {
        "endpoint": leg.endpoint,
        "hostport": leg.hostport,
        "status": leg.status,
        "duration_s": leg.duration_s,
        "fell_back": leg.fell_back,
        "error": leg.error,
    }


@dataclass
class ModelTally:
    requests: int = 0
    shed: int = 0  # refused by admission or flow control (the record has a shed_reason)
    errors: int = 0  # other failures (>= 400)
    finished: deque[float] = field(default_factory=deque)  # wall times, for the rate
    ttft: deque[tuple[float, float]] = field(default_factory=deque)  # (wall time, seconds)


class Tally:
    """Per-(pool, model) request counts and TTFT samples; per-endpoint routed counts."""

    def __init__(self, config: DashboardConfig | None = None) -> None:
        self.config = config or DashboardConfig()
        self.models: dict[tuple[str, str], ModelTally] = {}
        self.routed: dict[tuple[str, str], int] = {}  # (pool, endpoint name) -> requests dispatched

    def add(self, record: RequestRecord, model: str | None = None) -> None:
        """Count `record` under `model` (default: the name it carries)."""
        pool = record.pool or ""
        ts = finished_at(record)
        key = (pool, record.model if model is None else model)
        m = self.models.get(key)
        if m is None:  # not setdefault: that builds a tally (two deques) per request
            m = self.models[key] = ModelTally()
        m.requests += 1
        if is_shed(record):
            m.shed += 1
        elif record.status >= 400:
            m.errors += 1
        m.finished.append(ts)
        # trimmed here too, not only when the dashboard reads it: unread, it grew by one
        # entry per request for the life of the process (found by the 20-minute soak)
        while m.finished[0] < ts - self.config.rate_window_s:
            m.finished.popleft()
        if record.ttft_s is not None:
            m.ttft.append((ts, record.ttft_s))
            if len(m.ttft) > self.config.ttft_samples:
                m.ttft.popleft()
        if record.endpoint is not None:
            key = (pool, record.endpoint)
            self.routed[key] = self.routed.get(key, 0) + 1
        if record.prefill is not None:  # a P/D request was sent to its prefill endpoint too
            key = (pool, record.prefill.endpoint)
            self.routed[key] = self.routed.get(key, 0) + 1

    def model_stats(self, pool: str, model: str, now: float) -> dict[str, Any]:
        m = self.models.get((pool, model))
        if m is None:
            return {
                "requests": 0,
                "rate_rps": 0.0,
                "ttft_p50_ms": None,
                "ttft_p99_ms": None,
                "shed": 0,
                "errors": 0,
            }
        self._trim(m, now)
        recent = sum(1 for t in m.finished if t >= now - self.config.rate_window_s)
        ttfts = sorted(s for _, s in m.ttft)
        return {
            "requests": m.requests,
            "rate_rps": round(recent / self.config.rate_window_s, 3),
            "ttft_p50_ms": _ms(percentile(ttfts, 0.50)),
            "ttft_p99_ms": _ms(percentile(ttfts, 0.99)),
            "shed": m.shed,
            "errors": m.errors,
        }

    def _trim(self, m: ModelTally, now: float) -> None:
        while m.finished and m.finished[0] < now - self.config.rate_window_s:
            m.finished.popleft()
        while m.ttft and m.ttft[0][0] < now - self.config.window_s:
            m.ttft.popleft()


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, int(q * len(sorted_values) + 0.999999) - 1))
    return sorted_values[rank]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


class DecisionLog:
    """The last N records that reached a pool, newest last, plus the tally of all of them."""

    def __init__(self, keep: int = 200, config: DashboardConfig | None = None) -> None:
        self._items: deque[RequestRecord] = deque(maxlen=keep)
        self.tally = Tally(config)

    def add(self, record: RequestRecord, model: str | None = None) -> None:
        self._items.append(record)
        self.tally.add(record, model)

    def recent(self, limit: int | None = None) -> list[RequestRecord]:
        items = list(self._items)
        return items[-limit:] if limit else items
