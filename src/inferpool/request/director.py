"""The Director: one request's whole lifecycle, for data planes that only move bytes.

route() parses the body, resolves the model and priority, applies admission and asks the
pool's scheduler for ranked endpoints. The RoutedRequest it returns then tracks dispatch
(in-flight counts, the scheduler's routed/completed hooks), the response (usage, TTFT)
and ends in exactly one RequestRecord, whatever way the request ends. Everything is
synchronous and O(candidates), so asyncio data planes call it inline.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from inferpool.admission import Admission, SaturationSnapshot, ShedError
from inferpool.request.accounting import ResponseAccounting
from inferpool.request.body import ParsedBody, parse_body, with_model
from inferpool.request.errors import InferenceError
from inferpool.request.resolve import Resolution, resolve
from inferpool.scheduling.types import RequestOutcome, SchedulingRequest, SchedulingResult
from inferpool.state import Datastore, Endpoint

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"


class Scheduler(Protocol):
    """What the Director needs of a scheduler (inferpool.scheduling provides it)."""

    def schedule(self, request: SchedulingRequest, candidates: list[Endpoint], /) -> SchedulingResult: ...

    def on_routed(self, request: SchedulingRequest, endpoint: Endpoint, /) -> None: ...

    def on_completed(self, request: SchedulingRequest, endpoint: Endpoint, /) -> None: ...


@dataclass(frozen=True)
class DirectorConfig:
    top_scores: int = 3  # how many ranked candidates keep their score breakdown on the record
    base_models: Mapping[str, str] = field(default_factory=dict)  # pool key -> base model, for /v1/models


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the gateway's GET /v1/models."""

    id: str
    pool: str
    parent: str | None = None  # base model when `id` is served by a LoRA adapter, if known
    criticality: str | None = None


@dataclass(frozen=True)
class CandidateScore:
    endpoint: str
    hostport: str
    total: float
    scores: dict[str, float]


@dataclass
class RequestRecord:
    """Everything known about one finished (or refused) request: logs, metrics, dashboard."""

    request_id: str
    pool: str
    model: str  # as the client sent it ("" when the body had none)
    target_model: str  # what the model server saw
    endpoint: str | None  # name of the endpoint that served (last dispatched) it
    hostport: str | None
    status: int
    error: str | None
    priority: int
    stream: bool
    ttft_s: float | None
    e2e_s: float
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    prompt_tokens_estimate: int
    request_bytes: int
    response_bytes: int
    profile: str | None
    scores: list[CandidateScore]
    filtered_out: dict[str, str]
    shed_reason: str | None
    decision_s: float  # time spent in route()
    started_at: float  # wall clock (time.time()) when route() began
    attempts: int = 0  # endpoints dispatched to (retries make it > 1)
    objective: str | None = None
    fairness_id: str | None = None
    saturation: float | None = None  # pool load ratio seen by admission


Listener = Callable[[RequestRecord], None]


class Director:
    """Routes requests for all pools; share one per process between data planes."""

    def __init__(
        self,
        datastore: Datastore,
        scheduler_for: Callable[[str], Scheduler],
        admission: Admission,
        config: DirectorConfig | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.datastore = datastore
        self.scheduler_for = scheduler_for
        self.admission = admission
        self.config = config or DirectorConfig()
        self.rng = rng or random.Random()
        self.clock = clock
        self._listeners: list[Listener] = []

    # -- routing ---------------------------------------------------------------
    def route(
        self,
        pool: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        subset: frozenset[str] | None = None,
    ) -> RoutedRequest:
        """Decide where one request goes; raises InferenceError (already recorded) when it cannot go."""
        started, started_wall = self.clock(), time.time()
        lower = {k.lower(): v for k, v in headers.items()}
        request_id = lower.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        parsed: ParsedBody | None = None
        resolution: Resolution | None = None
        snapshot: SaturationSnapshot | None = None
        result: SchedulingResult | None = None
        try:
            parsed = parse_body(body, path)
            resolution = resolve(self.datastore, pool, parsed.model, lower, self.rng)
            candidates = _in_subset(self.datastore.ready_endpoints(pool), subset)
            snapshot = self.admission.admit(pool, candidates, resolution.priority).snapshot
            sched_request = SchedulingRequest(
                request_id=request_id,
                pool=pool,
                target_model=resolution.target_model,
                prompt=parsed.prompt,
                priority=resolution.priority,
                prompt_tokens_estimate=parsed.prompt_tokens_estimate,
                max_tokens=parsed.max_tokens,
                headers=lower,
                subset=subset,
                lora_adapter=self._is_adapter(pool, resolution.target_model),
            )
            scheduler = self.scheduler_for(pool)
            result = _schedule(scheduler, sched_request, candidates)
            if result.shed:
                raise self.admission.scheduler_shed(pool, result.profile)
            if not result.ranked:
                raise InferenceError(
                    503,
                    f"no endpoint in pool {pool} passed the filters of scheduler profile {result.profile}",
                )
        except InferenceError as exc:
            self._emit(
                _refused_record(
                    request_id,
                    pool,
                    parsed,
                    resolution,
                    result,
                    snapshot,
                    exc,
                    body,
                    started,
                    started_wall,
                    self,
                )
            )
            raise
        routed = RoutedRequest(
            director=self,
            scheduler=scheduler,
            request=sched_request,
            request_id=request_id,
            pool=pool,
            incoming_model=resolution.incoming_model,
            target_model=resolution.target_model,
            priority=resolution.priority,
            stream=parsed.stream,
            body=with_model(parsed, resolution.target_model),
            candidates=result.endpoints,
            result=result,
            resolution=resolution,
            started=started,
            started_wall=started_wall,
            request_bytes=len(body),
            saturation=snapshot.ratio,
        )
        routed.decision_s = self.clock() - started
        return routed

    def base_model(self, pool: str) -> tuple[str | None, set[str]]:
        """(the pool's base model if known, adapter names the model servers report).

        Known when configured, or when adapters have been seen on the servers and exactly one
        InferenceModel targets none of them: that one is the base.
        """
        adapters: set[str] = set()
        for endpoint in self.datastore.endpoints(pool):
            adapters |= endpoint.metrics.active_adapters | endpoint.metrics.waiting_adapters
        base = self.config.base_models.get(pool)
        if base is None and adapters:
            routes = self.datastore.models(pool)
            plain = {r.model_name for r in routes if not ({t.name for t in r.targets} & adapters)} - adapters
            base = next(iter(plain)) if len(plain) == 1 else None
        return base, adapters

    def _is_adapter(self, pool: str, target_model: str) -> bool | None:
        base, adapters = self.base_model(pool)
        if target_model in adapters:
            return True
        if base is None:
            return None
        return target_model != base

    def served_models(self, pool: str) -> list[ModelInfo]:
        """The public model names of `pool` (its InferenceModels), with the base model as parent of adapters."""
        routes = self.datastore.models(pool)
        base, _ = self.base_model(pool)
        models: list[ModelInfo] = []
        seen: set[str] = set()
        for route in routes:
            if route.model_name in seen:
                continue
            seen.add(route.model_name)
            parent = base if base is not None and route.model_name != base else None
            criticality = route.criticality.value if route.criticality is not None else None
            models.append(ModelInfo(route.model_name, pool, parent, criticality))
        if base is not None and base not in seen:
            models.insert(0, ModelInfo(base, pool))
        return models

    # -- records ---------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` with every RequestRecord; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, record: RequestRecord) -> None:
        for listener in list(self._listeners):
            try:
                listener(record)
            except Exception:  # a broken observer must not break the request path
                log.exception("request record listener failed")

    def top_scores(self, result: SchedulingResult) -> list[CandidateScore]:
        return [
            CandidateScore(s.endpoint.name, s.endpoint.hostport, s.total, dict(s.scores))
            for s in result.ranked[: self.config.top_scores]
        ]


class RoutedRequest:
    """A routed request: where it may go, and its accounting until finish()."""

    def __init__(
        self,
        *,
        director: Director,
        scheduler: Scheduler,
        request: SchedulingRequest,
        request_id: str,
        pool: str,
        incoming_model: str,
        target_model: str,
        priority: int,
        stream: bool,
        body: bytes,
        candidates: list[Endpoint],
        result: SchedulingResult,
        resolution: Resolution,
        started: float,
        started_wall: float,
        request_bytes: int,
        saturation: float,
    ) -> None:
        self.request_id = request_id
        self.pool = pool
        self.incoming_model = incoming_model
        self.target_model = target_model
        self.priority = priority
        self.stream = stream
        self.body = body
        self.candidates = candidates
        self.result = result
        self.resolution = resolution
        self.scheduling_request = request
        self.endpoint: Endpoint | None = None  # currently dispatched endpoint
        self.served_by: Endpoint | None = None  # last endpoint dispatched to (kept after release)
        self.attempts = 0
        self.decision_s = 0.0
        self.record: RequestRecord | None = None
        self._director = director
        self._scheduler = scheduler
        self._started = started
        self._started_wall = started_wall
        self._request_bytes = request_bytes
        self._saturation = saturation
        self._tokens = request.prompt_tokens_estimate
        self._accounting = ResponseAccounting(director.clock)

    @property
    def finished(self) -> bool:
        return self.record is not None

    @property
    def response_complete(self) -> bool:
        """The relayed SSE stream has carried its terminating `data: [DONE]` event."""
        return self._accounting.done

    def dispatched(self, endpoint: Endpoint) -> None:
        """The data plane is sending the request to `endpoint`; a retry releases the previous one."""
        if self.record is not None:
            raise RuntimeError(f"request {self.request_id} already finished")
        self._release()
        endpoint.in_flight += 1
        endpoint.in_flight_tokens += self._tokens
        self.endpoint = self.served_by = endpoint
        self.attempts += 1
        self._hook(self._scheduler.on_routed, endpoint)

    def response_started(self, status: int, headers: Mapping[str, str]) -> None:
        self._accounting = ResponseAccounting(self._director.clock)  # a retry starts a fresh response
        self._accounting.started(status, _header(headers, "content-type"))

    def response_data(self, chunk: bytes) -> None:
        self._accounting.feed(chunk)

    def finish(self, status: int, error: str | None = None) -> RequestRecord:
        """End the request (any outcome); idempotent: later calls return the first record."""
        if self.record is not None:
            return self.record
        self._release()
        acct = self._accounting
        acct.close()
        now = self._director.clock()
        usage = acct.usage
        ttft_at = acct.ttft_at
        endpoint = self.served_by
        self.record = RequestRecord(
            request_id=self.request_id,
            pool=self.pool,
            model=self.incoming_model,
            target_model=self.target_model,
            endpoint=endpoint.name if endpoint else None,
            hostport=endpoint.hostport if endpoint else None,
            status=status,
            error=error,
            priority=self.priority,
            stream=self.stream,
            ttft_s=ttft_at - self._started if ttft_at is not None else None,
            e2e_s=now - self._started,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=acct.completion_tokens,
            cached_tokens=usage.cached_tokens if usage else None,
            prompt_tokens_estimate=self.scheduling_request.prompt_tokens_estimate,
            request_bytes=self._request_bytes,
            response_bytes=acct.bytes,
            profile=self.result.profile,
            scores=self._director.top_scores(self.result),
            filtered_out=dict(self.result.filtered_out),
            shed_reason=None,
            decision_s=self.decision_s,
            started_at=self._started_wall,
            attempts=self.attempts,
            objective=self.resolution.objective,
            fairness_id=self.resolution.fairness_id,
            saturation=self._saturation,
        )
        if endpoint is not None:
            self._report_outcome(endpoint, self.record)
        self._director._emit(self.record)
        return self.record

    def _report_outcome(self, endpoint: Endpoint, record: RequestRecord) -> None:
        """Give learning plugins the observed latencies (optional hook: not every scheduler learns)."""
        hook = getattr(self._scheduler, "on_finished", None)
        if hook is None:
            return
        outcome = RequestOutcome(
            status=record.status,
            ttft_s=record.ttft_s,
            e2e_s=record.e2e_s,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            cached_tokens=record.cached_tokens,
        )
        try:
            hook(self.scheduling_request, endpoint, outcome)
        except Exception:  # learning is best effort; the request has already ended
            log.exception("scheduler on_finished failed for request %s", self.request_id)

    def _release(self) -> None:
        endpoint, self.endpoint = self.endpoint, None
        if endpoint is None:
            return
        endpoint.in_flight = max(0, endpoint.in_flight - 1)
        endpoint.in_flight_tokens = max(0, endpoint.in_flight_tokens - self._tokens)
        self._hook(self._scheduler.on_completed, endpoint)

    def _hook(self, hook: Callable[[SchedulingRequest, Endpoint], None], endpoint: Endpoint) -> None:
        try:
            hook(self.scheduling_request, endpoint)
        except Exception:  # counts are already right; a plugin bug must not leak in-flight
            log.exception("scheduler hook %s failed for request %s", hook.__name__, self.request_id)

    def __repr__(self) -> str:
        return (
            f"RoutedRequest({self.request_id} {self.incoming_model}->{self.target_model} on {self.endpoint})"
        )


# -- helpers -----------------------------------------------------------------------


def _schedule(
    scheduler: Scheduler, request: SchedulingRequest, candidates: list[Endpoint]
) -> SchedulingResult:
    try:
        return scheduler.schedule(request, candidates)
    except InferenceError:
        raise
    except Exception as exc:
        log.exception("scheduler failed for request %s", request.request_id)
        raise InferenceError(500, f"scheduler failed: {exc}") from exc


def _in_subset(endpoints: list[Endpoint], subset: frozenset[str] | None) -> list[Endpoint]:
    """Endpoints allowed by an ext_proc subset hint ("ip:port" entries; IPv6 with or without brackets)."""
    if subset is None:
        return endpoints
    return [e for e in endpoints if e.hostport in subset or f"{e.address}:{e.port}" in subset]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    for key, val in headers.items():
        if key.lower() == name:
            return val
    return None


def _refused_record(
    request_id: str,
    pool: str,
    parsed: ParsedBody | None,
    resolution: Resolution | None,
    result: SchedulingResult | None,
    snapshot: SaturationSnapshot | None,
    exc: InferenceError,
    body: bytes,
    started: float,
    started_wall: float,
    director: Director,
) -> RequestRecord:
    elapsed = director.clock() - started
    model = parsed.model if parsed else ""
    return RequestRecord(
        request_id=request_id,
        pool=pool,
        model=model,
        target_model=resolution.target_model if resolution else model,
        endpoint=None,
        hostport=None,
        status=exc.status,
        error=exc.message,
        priority=resolution.priority if resolution else 0,
        stream=parsed.stream if parsed else False,
        ttft_s=None,
        e2e_s=elapsed,
        prompt_tokens=None,
        completion_tokens=None,
        cached_tokens=None,
        prompt_tokens_estimate=parsed.prompt_tokens_estimate if parsed else 0,
        request_bytes=len(body),
        response_bytes=len(exc.to_json()),
        profile=result.profile if result else None,
        scores=director.top_scores(result) if result else [],
        filtered_out=dict(result.filtered_out) if result else {},
        shed_reason=exc.reason if isinstance(exc, ShedError) else None,
        decision_s=elapsed,
        started_at=started_wall,
        objective=resolution.objective if resolution else None,
        fairness_id=resolution.fairness_id if resolution else None,
        saturation=_ratio(snapshot or (exc.snapshot if isinstance(exc, ShedError) else None)),
    )


def _ratio(snapshot: SaturationSnapshot | None) -> float | None:
    return snapshot.ratio if snapshot is not None else None
