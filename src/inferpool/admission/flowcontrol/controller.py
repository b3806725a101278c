"""The flow controller: requests wait here while their pool is saturated and leave by priority and fairness.

`acquire()` returns at once when the pool has room and nobody of the same or a higher priority
is waiting; otherwise the request is queued (or refused with 429 when its band or the pool
is full) and waits for its turn. The dispatcher releases waiting requests, highest band
first, while the DispatchGate says the pool can take one more. It runs when a request
finishes, when a released request has been sent, when endpoints or pools change in the
datastore, and on a short timer while anything waits (the scraper writes fresh metrics
without a datastore event, so the timer is what notices them).

Every queued request leaves exactly once, with an upstream QueueOutcome: Dispatched,
RejectedCapacity (429), EvictedTTL (503), EvictedContextCancelled (the client went away)
or EvictedOther (the gateway is stopping: 503).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol
from weakref import WeakKeyDictionary

from inferpool.admission.flowcontrol.config import FlowControlConfig
from inferpool.admission.flowcontrol.queues import (
    DISPATCHED,
    EVICTED_CANCELLED,
    EVICTED_OTHER,
    EVICTED_TTL,
    REJECTED_CAPACITY,
    Outcome,
    PoolQueue,
    QueuedRequest,
)
from inferpool.admission.saturation import SaturationDetector
from inferpool.errors import InferenceError
from inferpool.state import ChangeEvent, Datastore, Endpoint

log = logging.getLogger(__name__)

FlowControlReason = Literal["queue-full", "queue-ttl-expired", "queue-stopped"]


@dataclass(frozen=True)
class FlowOutcome:
    """One request leaving flow control (dispatched at once included): what the metrics observe."""

    pool: str
    priority: int
    outcome: Outcome
    wait_s: float


@dataclass(frozen=True)
class QueueStats:
    pool: str
    priority: int
    requests: int
    bytes: int


class FlowControlError(InferenceError):
    """A request flow control refused or evicted; `reason` goes on its RequestRecord as shed_reason."""

    def __init__(
        self,
        status: int,
        message: str,
        outcome: Outcome,
        reason: FlowControlReason,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers=headers)
        self.outcome: Outcome = outcome
        self.reason: FlowControlReason = reason


def flow_id(fairness_id: str | None, headers: Mapping[str, str]) -> str:
    """The request's flow inside its band: the fairness id, else its API key's identity, else the shared flow.

    The key is only hashed, never kept: it is the bearer token the model server will see.
    """
    if fairness_id:
        return fairness_id
    scheme, _, token = headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer" and token:
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return ""


class Gate(Protocol):
    """Whether a pool can take one more request now (DispatchGate; tests use simpler ones)."""

    def has_capacity(self, pool: str, in_transit: int) -> bool: ...

    def sent(self, endpoint: Endpoint) -> None: ...

    def finished(self, endpoint: Endpoint) -> None: ...


class DispatchGate:
    """The saturation detector over the pool's ready endpoints, corrected for what the scrape cannot show yet.

    Scraped metrics are up to a scrape interval old; released blindly on them, a queue of
    hundreds would all go out at once. So each endpoint's waiting queue is replayed from its
    last scrape: one more for each request sent to it since, one less (never below zero) for
    each request that finished there since, which lets a waiting one start. The pool also
    counts requests released but not sent yet.
    """

    def __init__(
        self,
        datastore: Datastore,
        detector: SaturationDetector,
        scrape_lag_s: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._datastore = datastore
        self._detector = detector
        self._lag = scrape_lag_s
        self._clock = clock
        # Per endpoint: (time, +1 sent / -1 finished) since about its last scrape.
        self._events: WeakKeyDictionary[Endpoint, deque[tuple[float, int]]] = WeakKeyDictionary()

    def sent(self, endpoint: Endpoint) -> None:
        self._events.setdefault(endpoint, deque()).append((self._clock(), 1))

    def finished(self, endpoint: Endpoint) -> None:
        self._events.setdefault(endpoint, deque()).append((self._clock(), -1))

    def waiting(self, endpoint: Endpoint) -> int:
        """The endpoint's waiting queue now, as far as this gateway can tell."""
        waiting = endpoint.metrics.waiting_queue_size
        events = self._events.get(endpoint)
        if not events:
            return waiting
        # Events before the scrape are in its numbers; older than the staleness limit, the
        # endpoint counts as saturated anyway. Either way they are never needed again.
        seen_until = max(
            endpoint.metrics.scraped_at - self._lag, self._clock() - self._detector.config.stale_after_s
        )
        while events and events[0][0] < seen_until:
            events.popleft()
        for _, change in events:
            waiting = max(0, waiting + change)
        return waiting

    def has_capacity(self, pool: str, in_transit: int) -> bool:
        endpoints = self._datastore.ready_endpoints(pool)
        if not endpoints:
            return False
        snapshot = self._detector.snapshot(endpoints, waiting=self.waiting)
        in_transit_ratio = in_transit / (self._detector.config.queue_threshold * len(endpoints))
        return snapshot.ratio + in_transit_ratio < 1.0


class Grant:
    """Leave to schedule one request now; `done()` once it has been sent to an endpoint (or never will be)."""

    def __init__(self, controller: FlowController, pool: str, wait_s: float) -> None:
        self.wait_s = wait_s
        self._controller = controller
        self._pool = pool
        self._done = False

    def done(self) -> None:
        if not self._done:
            self._done = True
            self._controller._in_transit_done(self._pool)


FlowListener = Callable[[FlowOutcome], None]


class FlowController:
    """Queues per pool for one gateway process; lives on the event loop (no locks)."""

    def __init__(
        self,
        config: FlowControlConfig,
        gate: Gate,
        *,
        datastore: Datastore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._gate = gate
        self._clock = clock
        self._queues: dict[str, PoolQueue] = {}
        self._in_transit: dict[str, int] = {}  # released (or let through), not yet sent to an endpoint
        self._seq = itertools.count()
        self._listeners: list[FlowListener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._change_pending = False
        self._closed = False
        self._unsubscribe = datastore.subscribe(self._on_change) if datastore is not None else None

    # -- requests ------------------------------------------------------------------
    async def acquire(
        self, pool: str, priority: int, flow: str, byte_size: int, ttl_s: float | None = None
    ) -> Grant:
        """Wait until the request may be scheduled; raises FlowControlError when it may not.

        `ttl_s` is the request's own limit (its route timeout); the shorter of it and
        `defaultRequestTTL` applies. A cancelled waiter leaves the queue and frees its room.
        """
        if self._closed:
            raise _error(EVICTED_OTHER, pool, priority, 0.0, self.config)
        queue = self._queue(pool)
        if not queue.waiting_at_or_above(priority) and self._gate.has_capacity(pool, self._in_transit[pool]):
            self._in_transit[pool] += 1
            self._emit(FlowOutcome(pool, priority, DISPATCHED, 0.0))
            return Grant(self, pool, 0.0)
        now = self._clock()
        ttl = _shorter(ttl_s, self.config.default_request_ttl_s)
        item = QueuedRequest(
            pool, priority, flow, byte_size, now, now + ttl if ttl is not None else None, next(self._seq)
        )
        if not queue.admit(item):
            item.left_at = now  # refused on arrival: it never waited
            self._leave(item, REJECTED_CAPACITY)
            raise _error(REJECTED_CAPACITY, pool, priority, 0.0, self.config)
        loop = self._loop = asyncio.get_running_loop()
        item.future = loop.create_future()
        if ttl is not None:
            item.timer = loop.call_later(ttl, self._expire, item)
        self._arm()
        self.pump(pool)
        try:
            outcome = await item.future
        except asyncio.CancelledError:
            if queue.remove(item):
                self._leave(item, EVICTED_CANCELLED)
            elif item.outcome == DISPATCHED:
                self._in_transit_done(pool)  # released, but its client left before it could be sent
            raise
        if outcome != DISPATCHED:
            raise _error(outcome, pool, priority, item.wait_s, self.config)
        return Grant(self, pool, item.wait_s)

    def sent(self, endpoint: Endpoint) -> None:
        """A request (queued or not) was sent to `endpoint`."""
        self._gate.sent(endpoint)

    def finished(self, pool: str, endpoint: Endpoint | None) -> None:
        """A request of `pool` ended (on `endpoint`, if it reached one): room may have opened."""
        if endpoint is not None:
            self._gate.finished(endpoint)
        self.pump(pool)

    # -- dispatch --------------------------------------------------------------------
    def pump(self, pool: str | None = None) -> int:
        """Release waiting requests while their pool has room; returns how many left the queue."""
        released = 0
        for key in [pool] if pool is not None else list(self._queues):
            queue = self._queues.get(key)
            while queue and self._gate.has_capacity(key, self._in_transit[key]):
                item = queue.pop()
                if item is None:
                    break
                self._in_transit[key] += 1
                self._leave(item, DISPATCHED)
                released += 1
        return released

    def _in_transit_done(self, pool: str) -> None:
        self._in_transit[pool] = max(0, self._in_transit.get(pool, 0) - 1)
        self.pump(pool)

    def _expire(self, item: QueuedRequest) -> None:
        item.timer = None
        queue = self._queues.get(item.pool)
        if queue is not None and queue.remove(item):
            self._leave(item, EVICTED_TTL)

    def _leave(self, item: QueuedRequest, outcome: Outcome) -> None:
        item.outcome = outcome
        if item.left_at is None:
            item.left_at = self._clock()
        if item.timer is not None:
            item.timer.cancel()
            item.timer = None
        self._emit(FlowOutcome(item.pool, item.priority, outcome, item.wait_s))
        if item.future is not None and not item.future.done():
            item.future.set_result(outcome)

    def _arm(self) -> None:
        if self._timer is None and self._loop is not None and not self._closed and self.waiting():
            self._timer = self._loop.call_later(self.config.recheck_interval_s, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.pump()
        self._arm()

    def _on_change(self, event: ChangeEvent) -> None:
        if event.kind not in ("endpoint", "pool") or self._change_pending or self._loop is None:
            return
        self._change_pending = True
        self._loop.call_soon_threadsafe(self._changed)

    def _changed(self) -> None:
        self._change_pending = False
        self.pump()

    # -- state -----------------------------------------------------------------------
    def _queue(self, pool: str) -> PoolQueue:
        queue = self._queues.get(pool)
        if queue is None:
            queue = self._queues[pool] = PoolQueue(self.config)
            self._in_transit[pool] = 0
        return queue

    def waiting(self, pool: str | None = None) -> int:
        """Requests waiting now, in `pool` or in all pools."""
        if pool is not None:
            queue = self._queues.get(pool)
            return len(queue) if queue is not None else 0
        return sum(len(q) for q in self._queues.values())

    def in_transit(self, pool: str) -> int:
        return self._in_transit.get(pool, 0)

    def stats(self) -> list[QueueStats]:
        """Waiting requests and bytes per pool and priority band (bands seen so far, empty ones included)."""
        return [
            QueueStats(pool, band.priority, band.requests, band.bytes)
            for pool, queue in self._queues.items()
            for band in queue.stats()
        ]

    def subscribe(self, listener: FlowListener) -> Callable[[], None]:
        """Call `listener` with every FlowOutcome; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, outcome: FlowOutcome) -> None:
        for listener in list(self._listeners):
            try:
                listener(outcome)
            except Exception:  # a broken observer must not break the request path
                log.exception("flow control listener failed")

    def close(self) -> None:
        """Evict everything still waiting (503) and stop following the datastore."""
        self._closed = True
        for queue in self._queues.values():
            for item in list(queue.items()):
                queue.remove(item)
                self._leave(item, EVICTED_OTHER)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


def _shorter(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _error(
    outcome: Outcome, pool: str, priority: int, wait_s: float, config: FlowControlConfig
) -> FlowControlError:
    """The answer for a request that leaves flow control without being dispatched (upstream's statuses)."""
    if outcome == REJECTED_CAPACITY:
        return FlowControlError(
            429,
            f"request rejected by flow control: the queue of pool {pool} is full for priority {priority}",
            outcome,
            "queue-full",
            {"retry-after": str(config.retry_after_s)},
        )
    if outcome == EVICTED_TTL:
        return FlowControlError(
            503,
            f"request timed out in queue after {wait_s:.3f}s: pool {pool} stayed saturated",
            outcome,
            "queue-ttl-expired",
        )
    return FlowControlError(503, f"flow control of pool {pool} is stopping", outcome, "queue-stopped")


def build_flow_controller(
    config: FlowControlConfig | None, datastore: Datastore, detector: SaturationDetector
) -> FlowController | None:
    """The pool queue both data planes run when the profile enables flow control (None: off)."""
    if config is None:
        return None
    return FlowController(config, DispatchGate(datastore, detector, config.scrape_lag_s), datastore=datastore)
