"""The Director: one request's whole lifecycle, for data planes that only move bytes.

route() parses the body, resolves the model and priority, applies admission and asks the
pool's scheduler for ranked endpoints. The RoutedRequest it returns then tracks dispatch
(in-flight counts, the scheduler's routed/completed hooks), the response (usage, TTFT)
and ends in exactly one RequestRecord, whatever way the request ends. route() is
synchronous and O(candidates). Data planes call route_async(), which is route() unless
flow control is on: then a request waits in its pool's queue while the pool is saturated
(admission/flowcontrol/) and is scheduled when its turn comes.

Requests that never reach a pool end in a record too: refuse() for what the data plane
turns away itself (no route, bad key, screened), passthrough() for a Service backend. A
request to a pool without a body goes to a random ready endpoint (route_without_body()).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import msgspec

from inferpool.admission import Admission, SaturationSnapshot, ShedError
from inferpool.admission.flowcontrol import FlowControlError, FlowController, Grant, flow_id
from inferpool.errors import InferenceError
from inferpool.records import CandidateScore, HttpFacts, LazyScores, PrefillLeg, RequestRecord, new_request_id
from inferpool.request.accounting import ResponseAccounting
from inferpool.request.body import ParsedBody, RefusedBody, body_kind, parse_body, with_model
from inferpool.request.resolve import Resolution, RewriteRules, resolve
from inferpool.scheduling.types import Ranking, SchedulingRequest, SchedulingResult
from inferpool.state import Datastore, Endpoint

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class Scheduler(Protocol):
    """What the Director needs of a scheduler (inferpool.scheduling provides it)."""

    def schedule(self, request: SchedulingRequest, candidates: list[Endpoint], /) -> SchedulingResult: ...

    def on_routed(self, request: SchedulingRequest, endpoint: Endpoint, /) -> None: ...

    def on_completed(self, request: SchedulingRequest, endpoint: Endpoint, /) -> None: ...

    # Optional: on_finished(request, endpoint, record) for plugins that learn from outcomes;
    # reads_answers(kind) -> bool, whether a request of that API needs its answer read;
    # on_prefill_routed / on_prefill_completed(request, endpoint) for a P/D scheduler's prefill
    # profile (called only for requests it split); `prepares` and async prepare(body) for
    # plugins' work before scheduling that must not hold the event loop (route_async only).


_ADAPTER_VERDICTS_KEPT = 4096


@dataclass(frozen=True)
class DirectorConfig:
    top_scores: int = 3  # how many ranked candidates keep their score breakdown on the record
    base_models: Mapping[str, str] = field(default_factory=dict)  # pool key -> base model, for /v1/models
    # How long whether a model is a LoRA adapter is taken as known (the scrape interval: what the
    # servers report changes no faster); 0: asked of the endpoints on every request.
    adapter_verdict_ttl_s: float = 0.0


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the gateway's GET /v1/models."""

    id: str
    pool: str
    parent: str | None = None  # base model when `id` is served by a LoRA adapter, if known
    criticality: str | None = None
    # The model servers' own /v1/models entry for what `id` is served as (its target, or its
    # own name), when a server lists one: the entry the gateway answers, under its own `id`.
    card: Mapping[str, Any] | None = None


RecordListener = Callable[[RequestRecord], None]
RoutedListener = Callable[["RoutedRequest"], None]


@dataclass
class _Attempt:
    """What route() has learnt about one request so far; a refusal is recorded from it."""

    pool: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    request_id: str
    arrived: float  # director clock: when the data plane received the request
    routing_started: float  # director clock: when route() began
    started_wall: float
    http: HttpFacts | None
    parsed: ParsedBody | None = None
    resolution: Resolution | None = None
    snapshot: SaturationSnapshot | None = None
    result: SchedulingResult | None = None
    queue_wait_s: float = 0.0
    admitted: float | None = None  # director clock: when admission let it through


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
        flow_control: FlowController | None = None,
    ) -> None:
        self.datastore = datastore
        self.scheduler_for = scheduler_for
        self.admission = admission
        self.flow_control = flow_control  # None: saturation sheds (admission) instead of queueing
        self.config = config or DirectorConfig()
        self.rng = rng or random.Random()
        self.clock = clock
        self._listeners: list[RecordListener] = []
        self._routed_listeners: list[RoutedListener] = []
        # (pool, model) -> (adapter or not, when decided, datastore generation then): _is_adapter
        self._adapter_verdicts: dict[tuple[str, str], tuple[bool | None, float, int]] = {}
        self._rewrite_rules = RewriteRules()  # per configuration change, not per request

    # -- routing ---------------------------------------------------------------
    def route(
        self,
        pool: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        subset: frozenset[str] | None = None,
        *,
        http: HttpFacts | None = None,
        arrived: float | None = None,
        parsed: ParsedBody | None = None,
    ) -> RoutedRequest:
        """Decide where one request goes; raises InferenceError (already recorded) when it cannot go.

        Never waits: saturation sheds as admission says, whether flow control is on or not.
        `arrived` is when the data plane received the request (on this Director's clock);
        `parsed` is the body already decoded by the data plane, if it did (never decoded twice).
        """
        attempt = self._begin(pool, headers, body, http, arrived)
        try:
            self._resolve(attempt, path, parsed)
            return self._admit_and_schedule(attempt, subset)
        except InferenceError as exc:
            self._emit(_refused_record(attempt, exc, self))
            raise

    def _admit_and_schedule(self, attempt: _Attempt, subset: frozenset[str] | None) -> RoutedRequest:
        """Admission (which may shed) and the scheduler, for a resolved attempt that does not queue."""
        assert attempt.resolution is not None
        candidates = _in_subset(self.datastore.ready_endpoints(attempt.pool), subset)
        attempt.snapshot = self.admission.admit(
            attempt.pool, candidates, attempt.resolution.priority
        ).snapshot
        attempt.admitted = self.clock()
        return self._schedule(attempt, subset, candidates, None)

    async def route_async(
        self,
        pool: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        subset: frozenset[str] | None = None,
        ttl_s: float | None = None,
        *,
        http: HttpFacts | None = None,
        arrived: float | None = None,
        parsed: ParsedBody | None = None,
    ) -> RoutedRequest:
        """route(), except that with flow control on the request first waits for its turn in the
        pool's queue, and that a scheduler plugin's work before scheduling is awaited (a long new
        prompt tokenized in a worker thread by the precise-prefix scorer).

        `ttl_s` is the data plane's own deadline for the request (its route timeout): the
        wait ends by then at the latest (503). A waiter that is cancelled (the client went
        away) leaves the queue and is recorded as 499, as is one cancelled while prepared.
        """
        flow = self.flow_control
        scheduler = self.scheduler_for(pool)
        prepares = getattr(scheduler, "prepares", False)
        if flow is None and not prepares:
            return self.route(pool, path, headers, body, subset, http=http, arrived=arrived, parsed=parsed)
        attempt = self._begin(pool, headers, body, http, arrived)
        if flow is None:
            try:
                self._resolve(attempt, path, parsed)
                await self._prepare(scheduler, attempt)
                return self._admit_and_schedule(attempt, subset)
            except InferenceError as exc:
                self._emit(_refused_record(attempt, exc, self))
                raise
            except asyncio.CancelledError:
                error = InferenceError(499, "client disconnected before the request was scheduled")
                self._emit(_refused_record(attempt, error, self))
                raise
        grant: Grant | None = None
        try:
            resolution = self._resolve(attempt, path, parsed)
            candidates = _in_subset(self.datastore.ready_endpoints(pool), subset)
            generation = self.datastore.generation
            # Admission before queueing, without saturation shedding (the queue takes that role):
            # only the 503 for an empty pool. It is not asked again after the wait.
            decision = self.admission.admit(pool, candidates, resolution.priority, shed_saturated=False)
            attempt.snapshot = decision.snapshot
            queued_at = attempt.admitted = self.clock()
            try:
                grant = await flow.acquire(
                    pool,
                    resolution.priority,
                    flow_id(resolution.fairness_id, attempt.headers),
                    len(body),
                    ttl_s,
                )
            finally:
                attempt.queue_wait_s = self.clock() - queued_at
            if prepares:
                await self._prepare(scheduler, attempt)
            if self.datastore.generation != generation:  # the pool changed while it waited
                candidates = _in_subset(self.datastore.ready_endpoints(pool), subset)
            else:
                candidates = [e for e in candidates if e.ready]
            if not candidates:
                raise InferenceError(503, f"no ready endpoints in pool {pool} after waiting in its queue")
            return self._schedule(attempt, subset, candidates, grant)
        except InferenceError as exc:
            if grant is not None:
                grant.done()  # never sent: its room in the pool is free again
            self._emit(_refused_record(attempt, exc, self))
            raise
        except asyncio.CancelledError:
            if grant is not None:
                grant.done()  # cancelled after its turn came (in the scheduler's prepare): never sent
            self._emit(
                _refused_record(attempt, InferenceError(499, "client disconnected while queued"), self)
            )
            raise

    def refuse(
        self,
        request_id: str,
        err: InferenceError,
        *,
        http: HttpFacts | None = None,
        arrived: float | None = None,
        model: str = "",
        request_bytes: int = 0,
    ) -> RequestRecord:
        """Record a request the data plane turned away before any pool saw it (no route, bad key,
        body too large, screened prompt)."""
        now = self.clock()
        record = RequestRecord(
            request_id=request_id,
            pool=None,
            model=model,
            target_model=model,
            status=err.status,
            error=err.message,
            started_at=time.time() - (now - arrived if arrived is not None else 0.0),
            e2e_s=now - arrived if arrived is not None else 0.0,
            request_bytes=request_bytes,
            response_bytes=len(err.to_json()),
            http=http,
        )
        self._emit(record)
        return record

    def passthrough(
        self,
        request_id: str,
        candidates: Sequence[Endpoint],
        body: bytes,
        *,
        http: HttpFacts | None = None,
        arrived: float | None = None,
        model: str = "",
    ) -> PassthroughRequest:
        """A request for a plain Service backend: no scheduling, the same tracking and record."""
        return PassthroughRequest(self, request_id, list(candidates), body, http, arrived, model)

    def route_without_body(
        self,
        pool: str,
        path: str,
        headers: Mapping[str, str],
        subset: frozenset[str] | None = None,
        *,
        http: HttpFacts | None = None,
        arrived: float | None = None,
    ) -> PassthroughRequest:
        """A request to `pool` with no body (a GET of /health, /metrics, /version...): there is
        no model or prompt to schedule on, so a random ready endpoint serves it (the others
        after it, in turn, for retries), as upstream's EPP does; neither admission nor flow
        control sees it. Unless a scheduler plugin knows from the path where it must go (a
        stored response fetched by id): then that endpoint first. Raises InferenceError 503
        (recorded) when no endpoint is ready."""
        attempt = self._begin(pool, headers, b"", http, arrived)
        candidates = _in_subset(self.datastore.ready_endpoints(pool), subset)
        if not candidates:
            exc = InferenceError(503, f"no ready endpoints in pool {pool}")
            self._emit(_refused_record(attempt, exc, self))
            raise exc
        hook = getattr(self.scheduler_for(pool), "endpoint_for_path", None)
        pinned = hook(path) if hook is not None else None
        first = next((i for i, e in enumerate(candidates) if e.name == pinned), None) if pinned else None
        if first is None:
            first = self.rng.randrange(len(candidates))
        return PassthroughRequest(
            self,
            attempt.request_id,
            candidates[first:] + candidates[:first],
            b"",
            http,
            attempt.arrived,
            "",
            pool=pool,
        )

    async def _prepare(self, scheduler: Scheduler, attempt: _Attempt) -> None:
        """The scheduler's plugins' work that must not hold the event loop, done before
        scheduling (precise-prefix: a long new prompt tokenized in a worker thread). Best
        effort: a plugin whose preparation fails does the work in place when it scores."""
        assert attempt.parsed is not None
        try:
            await scheduler.prepare(attempt.parsed.data)  # type: ignore[attr-defined]
        except Exception:  # a plugin bug must not fail the request
            log.exception("scheduler prepare failed for request %s", attempt.request_id)

    def _begin(
        self,
        pool: str,
        headers: Mapping[str, str],
        body: bytes,
        http: HttpFacts | None,
        arrived: float | None,
    ) -> _Attempt:
        now, wall = self.clock(), time.time()
        lower = {k.lower(): v for k, v in headers.items()}
        request_id = lower.get(REQUEST_ID_HEADER) or new_request_id()
        if arrived is None or arrived > now:
            arrived = now
        return _Attempt(pool, lower, body, request_id, arrived, now, wall - (now - arrived), http)

    def _resolve(self, attempt: _Attempt, path: str, parsed: ParsedBody | None) -> Resolution:
        attempt.parsed = parsed if parsed is not None else parse_body(attempt.body, path)
        attempt.resolution = resolve(
            self.datastore, attempt.pool, attempt.parsed.model, attempt.headers, self.rng, self._rewrite_rules
        )
        return attempt.resolution

    def _schedule(
        self,
        attempt: _Attempt,
        subset: frozenset[str] | None,
        candidates: list[Endpoint],
        grant: Grant | None,
    ) -> RoutedRequest:
        """The pool's scheduler over the admitted candidates."""
        pool, parsed, resolution, snapshot = (
            attempt.pool,
            attempt.parsed,
            attempt.resolution,
            attempt.snapshot,
        )
        assert parsed is not None and resolution is not None and snapshot is not None
        sched_request = SchedulingRequest(
            request_id=attempt.request_id,
            pool=pool,
            target_model=resolution.target_model,
            prompt=parsed.prompt,
            priority=resolution.priority,
            prompt_tokens_estimate=parsed.prompt_tokens_estimate,
            max_tokens=parsed.max_tokens,
            headers=attempt.headers,
            subset=subset,
            lora_adapter=self._is_adapter(pool, resolution.target_model),
            body=parsed.data,
            api=parsed.kind,
        )
        scheduler = self.scheduler_for(pool)
        result = attempt.result = _schedule(scheduler, sched_request, candidates)
        if result.shed:
            raise self.admission.scheduler_shed(pool, result.profile)
        if not result.ranked:
            raise InferenceError(
                503,
                f"no endpoint in pool {pool} passed the filters of scheduler profile {result.profile}",
            )
        routed = RoutedRequest(
            director=self,
            scheduler=scheduler,
            request=sched_request,
            attempt=attempt,
            body=with_model(parsed, resolution.target_model),
            result=result,
            saturation=snapshot.ratio,
            grant=grant,
        )
        for listener in self._routed_listeners:
            try:
                listener(routed)
            except Exception:  # a broken observer must not break the request path
                log.exception("routed-request listener failed")
        return routed

    def base_model(self, pool: str) -> tuple[str | None, set[str]]:
        """(the pool's base model if known, adapter names the model servers report).

        Known when configured; else when the servers' model lists (GET /v1/models) name one
        model without a parent; else when adapters have been seen on the servers and exactly
        one InferenceModel targets none of them: that one is the base.
        """
        adapters, served = self._models_seen(pool)
        return self._infer_base(pool, adapters, served), adapters

    def _infer_base(self, pool: str, adapters: set[str], served: set[str]) -> str | None:
        base = self.config.base_models.get(pool)
        if base is None and len(served) == 1:
            base = next(iter(served))
        if base is None and adapters:
            routes = self.datastore.models(pool)
            plain = {r.model_name for r in routes if not ({t.name for t in r.targets} & adapters)} - adapters
            base = next(iter(plain)) if len(plain) == 1 else None
        return base

    def _models_seen(self, pool: str) -> tuple[set[str], set[str]]:
        """(adapters the servers report, names the servers list without a parent)."""
        adapters: set[str] = set()
        served: set[str] = set()
        for endpoint in self.datastore.endpoints(pool):  # per request: no new set per endpoint
            metrics = endpoint.metrics
            if metrics.active_adapters:
                adapters |= metrics.active_adapters
            if metrics.waiting_adapters:
                adapters |= metrics.waiting_adapters
            if metrics.loaded_adapters:
                adapters |= metrics.loaded_adapters
            if metrics.base_models:
                served |= metrics.base_models
        return adapters, served

    def _is_adapter(self, pool: str, target_model: str) -> bool | None:
        configured = self.config.base_models.get(pool)
        if configured is not None:
            # What the rest answers (no adapter is served under the base model's name), without
            # reading every endpoint's adapters: this runs per request, and pools can be large.
            return target_model != configured
        ttl = self.config.adapter_verdict_ttl_s
        if ttl <= 0.0:
            return self._endpoints_say_adapter(pool, target_model)
        # Per scrape, not per request: the answer walks the pool until a server names the model
        # (a LoRA adapter loaded on few of many servers, or servers that list no models: all of
        # them, 45 % of the core's time per request at 256 endpoints)
        key, now, generation = (pool, target_model), self.clock(), self.datastore.generation
        known = self._adapter_verdicts.get(key)
        if known is not None and known[2] == generation and now - known[1] < ttl:
            return known[0]
        verdict = self._endpoints_say_adapter(pool, target_model)
        if len(self._adapter_verdicts) >= _ADAPTER_VERDICTS_KEPT:
            self._adapter_verdicts.clear()  # client-chosen model names must not grow it without bound
        self._adapter_verdicts[key] = (verdict, now, generation)
        return verdict

    def _endpoints_say_adapter(self, pool: str, target_model: str) -> bool | None:
        """Whether the pool's servers serve `target_model` as a LoRA adapter (None: unknown)."""
        for endpoint in self.datastore.endpoints(pool):  # per request: the first server naming it decides
            metrics = endpoint.metrics
            if metrics.has_adapter(target_model):
                return True
            if metrics.lists_model(target_model):
                return False
        adapters, served = self._models_seen(pool)
        base = self._infer_base(pool, adapters, served)
        if base is None:
            return None
        return target_model != base

    def reads_answers(self, pool: str, path: str) -> bool:
        """Whether `pool`'s scheduler may need the answer of a request to `path` (session tokens,
        P/D, plugins that learn from answers): a data plane that skips answers must read these."""
        hook = getattr(self.scheduler_for(pool), "reads_answers", None)
        return True if hook is None else bool(hook(body_kind(path)))  # unknown: read them, as before

    def served_models(self, pool: str) -> list[ModelInfo]:
        """The public model names of `pool` (its InferenceModels), with the base model as parent of adapters."""
        routes = self.datastore.models(pool)
        base, _ = self.base_model(pool)
        cards = self._model_cards(pool)
        models: list[ModelInfo] = []
        seen: set[str] = set()
        for route in routes:
            if route.model_name in seen:
                continue
            seen.add(route.model_name)
            parent = base if base is not None and route.model_name != base else None
            criticality = route.criticality.value if route.criticality is not None else None
            card = next(
                (cards[t.name] for t in route.targets if t.name in cards), cards.get(route.model_name)
            )
            models.append(ModelInfo(route.model_name, pool, parent, criticality, card))
        if base is not None and base not in seen:
            models.insert(0, ModelInfo(base, pool, card=cards.get(base)))
        return models

    def _model_cards(self, pool: str) -> dict[str, Mapping[str, Any]]:
        """The pool's servers' /v1/models entries by id; where servers disagree, the first one's."""
        cards: dict[str, Mapping[str, Any]] = {}
        for endpoint in self.datastore.endpoints(pool):
            for name, card in (endpoint.metrics.model_cards or {}).items():
                cards.setdefault(name, card)
        return cards

    # -- records ---------------------------------------------------------------
    def subscribe(self, listener: RecordListener) -> Callable[[], None]:
        """Call `listener` with every RequestRecord; returns the unsubscribe function."""
        return _subscribe(self._listeners, listener)

    def subscribe_routed(self, listener: RoutedListener) -> Callable[[], None]:
        """Call `listener` with every request the scheduler placed (before it is dispatched)."""
        return _subscribe(self._routed_listeners, listener)

    def _emit(self, record: RequestRecord) -> None:
        for listener in self._listeners:
            try:
                listener(record)
            except Exception:  # a broken observer must not break the request path
                log.exception("request record listener failed")

    def top_scores(self, result: SchedulingResult) -> Sequence[CandidateScore]:
        """The record's first `top_scores` candidates, built only if something reads them."""
        ranked = result.ranked
        if isinstance(ranked, Ranking):
            count = self.config.top_scores
            if len(ranked) > _RANKING_KEPT_WHOLE:  # (the record keeps what it reads, not all of it)
                ranked = ranked.top(count)
            return LazyScores(min(count, len(ranked)), functools.partial(ranked.candidate_scores, count))
        return tuple(
            CandidateScore(s.endpoint.name, s.endpoint.hostport, s.total, s.scores)
            for s in ranked[: self.config.top_scores]
        )


# Up to this many candidates a record's lazy scores keep the whole ranking (a few KB; copying
# its top costs a request ≈2 µs); beyond, only the top few (docs/benchmarks.md: 28 MB held by
# the decision log's 200 records at 1,000 endpoints)
_RANKING_KEPT_WHOLE = 16


def _subscribe(listeners: list[Callable[..., None]], listener: Callable[..., None]) -> Callable[[], None]:
    listeners.append(listener)

    def unsubscribe() -> None:
        if listener in listeners:
            listeners.remove(listener)

    return unsubscribe


class _Tracked:
    """Dispatch and response tracking shared by routed and passthrough requests."""

    def __init__(self, director: Director, request_id: str, candidates: list[Endpoint], body: bytes) -> None:
        self.request_id = request_id
        self.candidates = candidates
        self.body = body
        self.endpoint: Endpoint | None = None  # currently dispatched endpoint
        self.served_by: Endpoint | None = None  # last endpoint dispatched to (kept after release)
        self.attempts = 0
        self.record: RequestRecord | None = None
        self.dispatched_at: float | None = None  # director clock: first sent to a model server
        self.response_started_at: float | None = None  # director clock: the relayed response's headers
        self._director = director
        self._accounting = ResponseAccounting(director.clock)
        self.prefill_candidates: Sequence[Endpoint] = ()  # P/D: ranked prefill endpoints; () = aggregated
        self.prefill_endpoint: Endpoint | None = None  # holding an in-flight count for its prefill leg
        self.prefill_leg: PrefillLeg | None = None  # the prefill leg's outcome, once it ended
        self._prefill_tokens = 0  # held on the prefill endpoint during its leg
        # P/D: the decoded request as the model server sees it (model rewritten), which both legs'
        # bodies are built from; None when the request is not split.
        self.pd_body: dict[str, Any] | None = None

    def prefill_dispatched(self, endpoint: Endpoint) -> None:
        """The prefill leg is being sent to `endpoint`: it holds an in-flight count, and the
        prompt's tokens (the prefill computes them), until the leg ends."""
        self._check_open()
        self._end_prefill(0, "superseded by another prefill try", None, fell_back=False)
        if self.dispatched_at is None:
            self.dispatched_at = self._director.clock()
        endpoint.in_flight += 1
        endpoint.in_flight_tokens += self._prefill_tokens
        self.prefill_endpoint = endpoint
        self._prefill_hook("on_prefill_routed", endpoint)

    def prefill_finished(
        self,
        status: int,
        error: str | None = None,
        duration_s: float | None = None,
        *,
        fell_back: bool = False,
    ) -> None:
        """The prefill leg ended (the decode leg follows, with or without its KV blocks)."""
        self._end_prefill(status, error, duration_s, fell_back=fell_back)

    def prefill_transfer_failed(self, error: str) -> None:
        """The decoder could not read the KV blocks the prefill leg made; it prefills locally instead."""
        leg = self.prefill_leg
        if leg is not None:
            self.prefill_leg = msgspec.structs.replace(leg, error=error, fell_back=True)

    def _end_prefill(
        self, status: int, error: str | None, duration_s: float | None, *, fell_back: bool
    ) -> None:
        endpoint, self.prefill_endpoint = self.prefill_endpoint, None
        if endpoint is None:
            return
        endpoint.in_flight = max(0, endpoint.in_flight - 1)
        endpoint.in_flight_tokens = max(0, endpoint.in_flight_tokens - self._prefill_tokens)
        self.prefill_leg = PrefillLeg(
            endpoint.name, endpoint.hostport, status, duration_s, error, fell_back=fell_back
        )
        self._prefill_hook("on_prefill_completed", endpoint)

    def _prefill_hook(self, name: str, endpoint: Endpoint) -> None:
        """Tell the scheduler's prefill profile (RoutedRequest); a passthrough has no scheduler."""

    @property
    def finished(self) -> bool:
        return self.record is not None

    @property
    def response_complete(self) -> bool:
        """The relayed SSE stream has carried its terminating `data: [DONE]` event."""
        return self._accounting.done

    def response_started(self, status: int, content_type: str | None) -> None:
        self.response_started_at = self._director.clock()
        acct = self._accounting
        if acct.status is not None or acct.bytes:  # a retry starts a fresh response
            acct = self._accounting = ResponseAccounting(self._director.clock)
        acct.started(status, content_type)

    def response_data(self, chunk: bytes) -> None:
        self._accounting.feed(chunk)

    def response_headers(self) -> Mapping[str, str]:
        """Headers the scheduler's plugins add to the client's response (none without a pool scheduler)."""
        return _NO_HEADERS

    @property
    def needs_answer(self) -> bool:
        """Whether a scheduler plugin learns from the answer (none without a pool scheduler)."""
        return False

    def _check_open(self) -> None:
        if self.record is not None:
            raise RuntimeError(f"request {self.request_id} already finished")


class PassthroughRequest(_Tracked):
    """A request that is not scheduled (for a Service backend, or without a body for a pool):
    tried in the given order, recorded like any other."""

    def __init__(
        self,
        director: Director,
        request_id: str,
        candidates: list[Endpoint],
        body: bytes,
        http: HttpFacts | None,
        arrived: float | None,
        model: str,
        *,
        pool: str | None = None,
    ) -> None:
        super().__init__(director, request_id, candidates, body)
        self.incoming_model = model
        self.pool = pool
        now = director.clock()
        self._arrived = arrived if arrived is not None and arrived <= now else now
        self._started_wall = time.time() - (now - self._arrived)
        self._http = http

    def dispatched(self, endpoint: Endpoint) -> None:
        self._check_open()
        if self.dispatched_at is None:
            self.dispatched_at = self._director.clock()
        self.endpoint = self.served_by = endpoint
        self.attempts += 1

    def finish(self, status: int, error: str | None = None) -> RequestRecord:
        if self.record is not None:
            return self.record
        self.endpoint = None
        acct = self._accounting
        acct.close()
        ttft_at = acct.ttft_at
        served = self.served_by
        self.record = RequestRecord(
            request_id=self.request_id,
            pool=self.pool,
            model=self.incoming_model,
            target_model=self.incoming_model,
            status=status,
            error=error,
            started_at=self._started_wall,
            e2e_s=self._director.clock() - self._arrived,
            endpoint=served.name if served else None,
            hostport=served.hostport if served else None,
            attempts=self.attempts,
            ttft_s=ttft_at - self._arrived if ttft_at is not None else None,
            request_bytes=len(self.body),
            response_bytes=acct.bytes,
            http=self._http,
            dispatched_s=_offset(self._arrived, self.dispatched_at),
            response_started_s=_offset(self._arrived, self.response_started_at),
        )
        self._director._emit(self.record)
        return self.record


class RoutedRequest(_Tracked):
    """A routed request: where it may go, and its accounting until finish()."""

    def __init__(
        self,
        *,
        director: Director,
        scheduler: Scheduler,
        request: SchedulingRequest,
        attempt: _Attempt,
        body: bytes,
        result: SchedulingResult,
        saturation: float,
        grant: Grant | None = None,
    ) -> None:
        super().__init__(director, attempt.request_id, result.endpoints, body)
        resolution = attempt.resolution
        parsed = attempt.parsed
        assert resolution is not None and parsed is not None
        if result.prefill is not None and parsed.kind not in ("completion", "chat"):
            # vLLM's disaggregated protocol exists for completions and chat only (an embedding has
            # no decode leg; Responses and Messages carry no kv_transfer_params): such a request
            # is served whole by the decode pick.
            result.prefill = None
        if result.prefill is not None:
            self.prefill_candidates = result.prefill.endpoints
            self.pd_body = {**parsed.data, "model": resolution.target_model}
        self.pool = attempt.pool
        self.incoming_model = resolution.incoming_model
        self.target_model = resolution.target_model
        self.priority = resolution.priority
        self.stream = parsed.stream
        self.result = result
        self.resolution = resolution
        self.scheduling_request = request
        self.queue_wait_s = attempt.queue_wait_s
        self._attempt = attempt
        self._scheduler = scheduler
        self._saturation = saturation
        self._grant = grant  # flow control's leave to go; done() once the request is sent
        # Each leg holds the prompt's tokens on its own endpoint while it runs: the prefiller
        # computes them, the decoder keeps their KV blocks (pulled, or computed after a fallback).
        self._tokens = self._prefill_tokens = request.prompt_tokens_estimate
        self.decision_s = director.clock() - attempt.routing_started - attempt.queue_wait_s

    def dispatched(self, endpoint: Endpoint) -> None:
        """The data plane is sending the request to `endpoint`; a retry releases the previous one."""
        self._check_open()
        if self.dispatched_at is None:
            self.dispatched_at = self._director.clock()
        self._release()
        endpoint.in_flight += 1
        endpoint.in_flight_tokens += self._tokens
        self.endpoint = self.served_by = endpoint
        self.attempts += 1
        self._hook(self._scheduler.on_routed, endpoint)
        flow = self._director.flow_control
        if flow is not None:
            flow.sent(endpoint)  # before the grant ends, so the pool never looks emptier than it is
        if self._grant is not None:
            self._end_grant()

    @property
    def needs_answer(self) -> bool:
        """Whether a scheduler plugin learns from this request's answer (stored-response-filter
        reads its response id), so a data plane that reads only a sample of answers reads this one."""
        hook = getattr(self._scheduler, "needs_answer", None)
        if hook is None:
            return False
        try:
            return bool(hook(self.scheduling_request))
        except Exception:  # a plugin bug costs a sampled answer, not the request
            log.exception("scheduler needs_answer failed for request %s", self.request_id)
            return False

    def response_headers(self) -> Mapping[str, str]:
        """Headers the scheduler's plugins set for the endpoint that served (the session token).

        Asked once, when the data plane starts the response; without such plugins (the
        scheduler's `adds_response_headers` false or absent) it costs one attribute read.
        """
        served = self.served_by
        if served is None or not getattr(self._scheduler, "adds_response_headers", False):
            return _NO_HEADERS
        hook = self._scheduler.response_headers  # type: ignore[attr-defined]
        picks = {"": served, self.result.profile: served}
        prefill = self.result.prefill
        if prefill is not None and prefill.ranked:
            picks[prefill.profile] = prefill.ranked[0].endpoint
        try:
            return hook(self.scheduling_request, picks)  # type: ignore[no-any-return]
        except Exception:  # a plugin bug must not break an answer that is already on its way
            log.exception("scheduler response_headers failed for request %s", self.request_id)
            return _NO_HEADERS

    def finish(self, status: int, error: str | None = None) -> RequestRecord:
        """End the request (any outcome); idempotent: later calls return the first record."""
        if self.record is not None:
            return self.record
        holder = self.endpoint
        self._release()
        if self.prefill_endpoint is not None:
            self._end_prefill(0, "the request ended during its prefill leg", None, fell_back=False)
        if self._grant is not None:
            self._end_grant()
        flow = self._director.flow_control
        if flow is not None:
            flow.finished(self.pool, holder)  # room may have opened for a waiting request
        acct = self._accounting
        acct.close()
        attempt = self._attempt
        usage = acct.usage
        ttft_at = acct.ttft_at
        endpoint = self.served_by
        self.record = RequestRecord(
            request_id=self.request_id,
            pool=self.pool,
            model=self.incoming_model,
            target_model=self.target_model,
            status=status,
            error=error,
            started_at=attempt.started_wall,
            e2e_s=self._director.clock() - attempt.arrived,
            routed=True,
            endpoint=endpoint.name if endpoint else None,
            hostport=endpoint.hostport if endpoint else None,
            attempts=self.attempts,
            priority=self.priority,
            stream=self.stream,
            ttft_s=ttft_at - attempt.arrived if ttft_at is not None else None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=acct.completion_tokens,
            cached_tokens=usage.cached_tokens if usage else None,
            prompt_tokens_estimate=self.scheduling_request.prompt_tokens_estimate,
            request_bytes=len(attempt.body),
            response_bytes=acct.bytes,
            profile=self.result.profile,
            scores=self._director.top_scores(self.result),
            filtered_out=self.result.filtered_out,
            decision_s=self.decision_s,
            queue_wait_s=self.queue_wait_s,
            objective=self.resolution.objective,
            fairness_id=self.resolution.fairness_id,
            saturation=self._saturation,
            http=attempt.http,
            routing_started_s=attempt.routing_started - attempt.arrived,
            admitted_s=_offset(attempt.arrived, attempt.admitted),
            dispatched_s=_offset(attempt.arrived, self.dispatched_at),
            response_started_s=_offset(attempt.arrived, self.response_started_at),
            prefill=self.prefill_leg,
            response_id=acct.response_id,
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
        try:
            hook(self.scheduling_request, endpoint, record)
        except Exception:  # learning is best effort; the request has already ended
            log.exception("scheduler on_finished failed for request %s", self.request_id)

    def _end_grant(self) -> None:
        grant, self._grant = self._grant, None
        if grant is not None:
            grant.done()

    def _release(self) -> None:
        endpoint, self.endpoint = self.endpoint, None
        if endpoint is None:
            return
        endpoint.in_flight = max(0, endpoint.in_flight - 1)
        endpoint.in_flight_tokens = max(0, endpoint.in_flight_tokens - self._tokens)
        self._hook(self._scheduler.on_completed, endpoint)

    def _prefill_hook(self, name: str, endpoint: Endpoint) -> None:
        hook = getattr(self._scheduler, name, None)
        if hook is not None:
            self._hook(hook, endpoint)

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


def _offset(arrived: float, at: float | None) -> float | None:
    """Seconds from arrival to `at` (director clock), for the record's step offsets."""
    return at - arrived if at is not None else None


def _in_subset(endpoints: list[Endpoint], subset: frozenset[str] | None) -> list[Endpoint]:
    """Endpoints allowed by an ext_proc subset hint ("ip:port" entries; IPv6 with or without brackets)."""
    if subset is None:
        return endpoints
    return [e for e in endpoints if e.hostport in subset or f"{e.address}:{e.port}" in subset]


def _refused_record(attempt: _Attempt, exc: InferenceError, director: Director) -> RequestRecord:
    now = director.clock()
    parsed, resolution, result = attempt.parsed, attempt.resolution, attempt.result
    model = parsed.model if parsed else exc.model if isinstance(exc, RefusedBody) else ""
    shed_reason = exc.reason if isinstance(exc, ShedError | FlowControlError) else None
    snapshot = attempt.snapshot or (exc.snapshot if isinstance(exc, ShedError) else None)
    return RequestRecord(
        request_id=attempt.request_id,
        pool=attempt.pool,
        model=model,
        target_model=resolution.target_model if resolution else model,
        status=exc.status,
        error=exc.message,
        started_at=attempt.started_wall,
        e2e_s=now - attempt.arrived,
        priority=resolution.priority if resolution else 0,
        stream=parsed.stream if parsed else False,
        prompt_tokens_estimate=parsed.prompt_tokens_estimate if parsed else 0,
        request_bytes=len(attempt.body),
        response_bytes=len(exc.to_json()),
        profile=result.profile if result else None,
        scores=director.top_scores(result) if result else (),
        filtered_out=result.filtered_out if result else {},
        shed_reason=shed_reason,
        decision_s=now - attempt.routing_started - attempt.queue_wait_s,
        queue_wait_s=attempt.queue_wait_s,
        objective=resolution.objective if resolution else None,
        fairness_id=resolution.fairness_id if resolution else None,
        saturation=snapshot.ratio if snapshot is not None else None,
        http=attempt.http,
        routing_started_s=attempt.routing_started - attempt.arrived,
        admitted_s=_offset(attempt.arrived, attempt.admitted),
    )
