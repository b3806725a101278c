"""One immutable record per request: what metrics, the access log, the dashboard, the decision log
and learning scorers all read.

A leaf module (no inferpool imports), so that every layer that observes requests, the
scheduling plugins included, can take the record without importing the request core.
The types are frozen msgspec Structs, not frozen dataclasses: a frozen dataclass sets each
field through `object.__setattr__`, and a request builds a 36-field record and a few scores
(6.4 µs for the record alone, 2.4 as a Struct).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, overload

import msgspec


def new_request_id() -> str:
    """The id of a request that came without an x-request-id: 128 random bits in hex, as
    `uuid.uuid4().hex` writes them (≈0.5 µs, where building the UUID costs ≈3)."""
    return os.urandom(16).hex()


class CandidateScore(msgspec.Struct, frozen=True):
    """One ranked candidate of the scheduler's answer, with each scorer's raw score."""

    endpoint: str
    hostport: str
    total: float
    scores: Mapping[str, float]


class LazyScores(Sequence[CandidateScore]):
    """A record's ranked candidates, built when first read.

    Every routed request's record carries them, and few are read: the metrics only ask whether
    there are any, the decision log keeps the last few hundred records for the dashboard, and
    only the access log (when on) reads every one. Building them is a `CandidateScore` and a
    dict per candidate (≈7 µs a request on a slow core). Compares and pickles as the tuple it
    stands for (and is unhashable like it); `count` is its length, known without building it.
    """

    __slots__ = ("_build", "_built", "_count")

    def __init__(self, count: int, build: Callable[[], tuple[CandidateScore, ...]]) -> None:
        self._count = count
        self._build: Callable[[], tuple[CandidateScore, ...]] | None = build
        self._built: tuple[CandidateScore, ...] | None = None

    def _items(self) -> tuple[CandidateScore, ...]:
        built = self._built
        if built is None:
            assert self._build is not None
            built = self._built = self._build()
            self._build = None  # the ranking it reads can go
        return built

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    @overload
    def __getitem__(self, index: int) -> CandidateScore: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[CandidateScore, ...]: ...
    def __getitem__(self, index: int | slice) -> CandidateScore | tuple[CandidateScore, ...]:
        return self._items()[index]

    def __iter__(self) -> Iterator[CandidateScore]:
        return iter(self._items())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LazyScores):
            other = other._items()
        return self._items() == other if isinstance(other, tuple) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # as the tuple: a score holds a dict

    def __repr__(self) -> str:
        return repr(self._items())

    def __reduce__(self) -> tuple[Any, ...]:
        return (tuple, (self._items(),))  # pickles (and copies) as the tuple it stands for


class TraceContext(msgspec.Struct, frozen=True):
    """The W3C trace context a data plane took part in (only when tracing is on).

    `span_id` is the plane's request span: the traceparent sent to the model server names it
    as the parent, and the spans exported from the record (observe/tracing.py) carry it.
    """

    trace_id: int  # 128 bits
    span_id: int  # 64 bits
    parent_span_id: int | None  # the caller's span from its traceparent; None: this plane began the trace
    sampled: bool = True
    tracestate: str = ""  # the caller's, forwarded unchanged


class HttpFacts(msgspec.Struct, frozen=True):
    """What the data plane knows of the HTTP exchange before the core sees the request.

    The built-in gateway fills every field; the EPP knows method and path only (Envoy owns
    listeners and routes).
    """

    method: str = "POST"
    path: str = ""
    listener: str | None = None  # "namespace/gateway/listener"
    route: str | None = None  # "namespace/httproute"
    backend: str | None = None  # "InferencePool/ns/name" or "Service/ns/name"
    trace: TraceContext | None = None  # None unless tracing is on


class PrefillLeg(msgspec.Struct, frozen=True):
    """The prefill leg of a disaggregated (P/D) request, as the plane that ran it saw it.

    `fell_back` is True when the leg failed and the decode endpoint prefilled locally; the
    client then got an ordinary answer all the same. `status` 0: no HTTP answer came, or the
    plane (the EPP, whose sidecar runs the leg) did not learn it.
    """

    endpoint: str
    hostport: str
    status: int = 0
    duration_s: float | None = None
    error: str | None = None
    fell_back: bool = False


class RequestRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Everything known about one finished (or refused) request.

    `pool` is None for requests that never reached an InferencePool (a Service backend, or
    one the data plane refused before routing: no route, bad key, body too large, screened).
    `routed` is True once the scheduler picked endpoints for it (the running-requests gauge
    counts exactly those).
    """

    request_id: str
    pool: str | None
    model: str  # as the client sent it ("" when the body had none)
    target_model: str  # what the model server saw
    # HTTP status of the answer; 0 when the data plane did not see it (the EPP reads only a
    # sampled share of answers by default: the request's end is exact, its status unknown)
    status: int
    error: str | None = None
    started_at: float  # wall clock (time.time()) when the request arrived
    e2e_s: float  # arrival to the last byte (or the refusal)
    routed: bool = False
    endpoint: str | None = None  # name of the endpoint that served (last dispatched) it
    hostport: str | None = None
    attempts: int = 0  # endpoints dispatched to (retries make it > 1)
    priority: int = 0
    stream: bool = False
    ttft_s: float | None = None
    prompt_tokens: int | None = None  # the model server's usage, when it reported it
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    prompt_tokens_estimate: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    profile: str | None = None
    scores: Sequence[CandidateScore] = ()  # best first; a `LazyScores` from the Director
    filtered_out: Mapping[str, str] = msgspec.field(default_factory=dict)
    shed_reason: str | None = None
    decision_s: float = 0.0  # time spent deciding (not queueing)
    queue_wait_s: float = 0.0  # time spent waiting in flow control
    objective: str | None = None
    fairness_id: str | None = None
    saturation: float | None = None  # pool load ratio seen by admission
    http: HttpFacts | None = None  # None outside a data plane (virtual-time bench)
    # When each step began, in seconds after arrival (None: the request never got there). The
    # spans of a trace are drawn from these: admission from `routing_started_s`, the queue from
    # `admitted_s` for `queue_wait_s`, scheduling after it until `decision_s` is spent.
    routing_started_s: float | None = None  # the core began routing (body decoded, model resolved next)
    admitted_s: float | None = None  # admission let it through (to the queue, or the scheduler)
    dispatched_s: float | None = None  # first sent to a model server
    response_started_s: float | None = None  # the model server's response headers arrived
    # P/D: the prefill leg, when the scheduler split the request (the decode leg is `endpoint`).
    prefill: PrefillLeg | None = None
    # Responses API: the id the model server gave its answer (a later previous_response_id).
    response_id: str | None = None

    @property
    def failed(self) -> bool:
        return self.status >= 400 or self.error is not None

    @property
    def trace(self) -> TraceContext | None:
        return self.http.trace if self.http is not None else None
