"""The queues of one pool: bands by priority, flows inside a band, requests inside a flow.

Pure bookkeeping, no I/O and no clock: the controller decides when to pop. Selection is
strict priority between bands (highest first), then the band's fairness policy between its
flows (round-robin: each flow with waiting requests takes a turn; global-strict: the flow
whose head request goes first by the ordering), then the ordering inside the flow (FCFS by
arrival, or EDF by deadline with arrival breaking ties and no deadline last). Removal of a
request from the middle (cancelled, expired) frees its bytes and count at once; its heap
entry is dropped lazily.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from inferpool.admission.flowcontrol.config import EDF, GLOBAL_STRICT, BandConfig, FlowControlConfig

Outcome = Literal["Dispatched", "RejectedCapacity", "EvictedTTL", "EvictedContextCancelled", "EvictedOther"]
DISPATCHED: Outcome = "Dispatched"
REJECTED_CAPACITY: Outcome = "RejectedCapacity"
EVICTED_TTL: Outcome = "EvictedTTL"
EVICTED_CANCELLED: Outcome = "EvictedContextCancelled"
EVICTED_OTHER: Outcome = "EvictedOther"  # the gateway is stopping
OUTCOMES: tuple[Outcome, ...] = (DISPATCHED, REJECTED_CAPACITY, EVICTED_TTL, EVICTED_CANCELLED, EVICTED_OTHER)

_NO_DEADLINE = float("inf")


@dataclass(eq=False)
class QueuedRequest:
    """One request waiting for dispatch; `outcome` is set exactly once, when it leaves."""

    pool: str
    priority: int
    flow_id: str  # "" is the shared flow of requests without a fairness identity
    byte_size: int
    arrived: float
    deadline: float | None  # arrived + TTL; None: waits until dispatched or cancelled
    seq: int  # arrival order, unique per controller
    in_queue: bool = False  # kept by PoolQueue
    outcome: Outcome | None = None  # set by the controller
    left_at: float | None = None
    # The controller's handles: the waiter's future and the TTL timer.
    future: asyncio.Future[Outcome] | None = field(default=None, repr=False)
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def wait_s(self) -> float:
        return (self.left_at - self.arrived) if self.left_at is not None else 0.0


class _Flow:
    """One flow's waiting requests as a heap keyed by the band's ordering."""

    def __init__(self, edf: bool) -> None:
        self._edf = edf
        self._heap: list[tuple[float, int, QueuedRequest]] = []
        self.live = 0

    def push(self, item: QueuedRequest) -> None:
        deadline = item.deadline if item.deadline is not None else _NO_DEADLINE
        key = deadline if self._edf else 0.0
        heapq.heappush(self._heap, (key, item.seq, item))
        self.live += 1

    def head(self) -> tuple[float, int, QueuedRequest]:
        """The next request (skipping ones removed meanwhile); only called while live > 0."""
        while not self._heap[0][2].in_queue:
            heapq.heappop(self._heap)
        return self._heap[0]

    def pop(self) -> QueuedRequest:
        item = self.head()[2]
        heapq.heappop(self._heap)
        self.live -= 1
        return item

    def waiting(self) -> list[QueuedRequest]:
        return [entry[2] for entry in self._heap if entry[2].in_queue]


class Band:
    """All waiting requests of one priority in one pool."""

    def __init__(self, priority: int, config: BandConfig) -> None:
        self.priority = priority
        self.config = config
        self.flows: dict[str, _Flow] = {}
        self._turns: deque[str] = deque()  # flows with waiting requests, in round-robin order
        self.requests = 0
        self.bytes = 0

    def fits(self, byte_size: int) -> bool:
        cfg = self.config
        if cfg.max_requests is not None and self.requests + 1 > cfg.max_requests:
            return False
        return self.bytes + byte_size <= cfg.max_bytes

    def add(self, item: QueuedRequest) -> None:
        flow = self.flows.get(item.flow_id)
        if flow is None:
            flow = self.flows[item.flow_id] = _Flow(self.config.ordering == EDF)
            self._turns.append(item.flow_id)
        flow.push(item)
        item.in_queue = True
        self.requests += 1
        self.bytes += item.byte_size

    def pop(self) -> QueuedRequest:
        """The band's next request by its fairness and ordering policies; only called while requests > 0."""
        if self.config.fairness == GLOBAL_STRICT:
            flow_id = min(self._turns, key=lambda f: self.flows[f].head()[:2])
            self._turns.remove(flow_id)
        else:
            flow_id = self._turns.popleft()
        flow = self.flows[flow_id]
        item = flow.pop()
        if flow.live:
            self._turns.append(flow_id)  # its next turn comes after every other waiting flow's
        else:
            del self.flows[flow_id]
        self._forget(item)
        return item

    def remove(self, item: QueuedRequest) -> None:
        flow = self.flows[item.flow_id]
        flow.live -= 1
        if not flow.live:
            del self.flows[item.flow_id]
            self._turns.remove(item.flow_id)
        self._forget(item)

    def _forget(self, item: QueuedRequest) -> None:
        item.in_queue = False
        self.requests -= 1
        self.bytes -= item.byte_size


@dataclass(frozen=True)
class BandStats:
    priority: int
    requests: int
    bytes: int


class PoolQueue:
    """The bands of one pool and the pool-wide limits."""

    def __init__(self, config: FlowControlConfig) -> None:
        self.config = config
        self.bands: dict[int, Band] = {}
        self._order: list[int] = []  # priorities, highest first
        self.requests = 0
        self.bytes = 0

    def __len__(self) -> int:
        return self.requests

    def band(self, priority: int) -> Band:
        band = self.bands.get(priority)
        if band is None:
            band = self.bands[priority] = Band(priority, self.config.band(priority))
            self._order = sorted(self.bands, reverse=True)
        return band

    def waiting_at_or_above(self, priority: int) -> bool:
        """Whether a request of `priority` would have to wait behind someone already queued."""
        return any(self.bands[p].requests for p in self._order if p >= priority)

    def admit(self, item: QueuedRequest) -> bool:
        """Queue `item` if the band and pool limits leave room; False (nothing changed) otherwise."""
        cfg = self.config
        if cfg.max_requests is not None and self.requests + 1 > cfg.max_requests:
            return False
        if cfg.max_bytes is not None and self.bytes + item.byte_size > cfg.max_bytes:
            return False
        band = self.band(item.priority)
        if not band.fits(item.byte_size):
            return False
        band.add(item)
        self.requests += 1
        self.bytes += item.byte_size
        return True

    def pop(self) -> QueuedRequest | None:
        """Take the next request by strict priority; None when nothing waits. The caller sets its outcome."""
        for priority in self._order:
            band = self.bands[priority]
            if band.requests:
                item = band.pop()
                self._forget(item)
                return item
        return None

    def remove(self, item: QueuedRequest) -> bool:
        """Take `item` out wherever it is; False if it already left (dispatched or removed)."""
        if not item.in_queue:
            return False
        band = self.bands[item.priority]
        band.remove(item)
        self._forget(item)
        return True

    def stats(self) -> list[BandStats]:
        return [BandStats(p, self.bands[p].requests, self.bands[p].bytes) for p in self._order]

    def items(self) -> Iterator[QueuedRequest]:
        """Every waiting request (for shutdown)."""
        for band in self.bands.values():
            for flow in band.flows.values():
                yield from flow.waiting()

    def _forget(self, item: QueuedRequest) -> None:
        self.requests -= 1
        self.bytes -= item.byte_size
