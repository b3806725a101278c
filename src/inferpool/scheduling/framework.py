"""The scheduling framework: filters narrow, scorers rank, a picker orders; a profile wires them.

Shaped like the upstream Endpoint Picker so its configs and plugin names carry over. Plugins
are plain objects that satisfy one of the protocols below; stateful ones (prefix cache,
round-robin) also implement some of the `on_*` hooks and keep their state on the instance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from operator import add, mul
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from inferpool.records import RequestRecord
from inferpool.scheduling.types import Ranking, SchedulingRequest, SchedulingResult, ScoredEndpoint
from inferpool.state import Endpoint

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})

# One scorer's scores for a candidate list, position by position, each in [0, 1].
Column = Callable[[SchedulingRequest, list[Endpoint]], list[float]]


_ROW_WISE_UP_TO = 4  # candidates up to which _totals adds row by row (measured crossover)


class ShedRequest(Exception):
    """Raised by a filter or scorer that decides the request must be rejected now (the caller answers 429).

    An exception rather than a return value because shedding is rare and must stop the
    whole cycle, not just one plugin.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class Filter(Protocol):
    """Removes endpoints that must not serve the request.

    A `soft` filter expresses a preference: when it would remove every endpoint, the
    scheduler ignores it and passes its input on unchanged (the upstream v0.3 behaviour,
    where a failed filter hands the original set to the next one).
    """

    name: str
    soft: bool

    def filter(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]: ...


@runtime_checkable
class Scorer(Protocol):
    """Rates each endpoint from 0 (worst) to 1 (best); endpoints left out count as 0."""

    name: str

    def score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]: ...


@runtime_checkable
class ColumnScorer(Scorer, Protocol):
    """A scorer that can also answer as a list aligned with `endpoints` (the fast path).

    A new list each call (the result keeps it). Every value must already be in [0, 1] and
    not NaN: the scheduler does not clamp it.
    `score` must give the same values keyed by endpoint.
    """

    def score_column(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[float]: ...


@runtime_checkable
class Picker(Protocol):
    """Orders the scored endpoints: the first is the pick, the rest are fallbacks in order."""

    name: str

    def pick(self, scored: list[ScoredEndpoint]) -> list[ScoredEndpoint]: ...


@runtime_checkable
class RankingPicker(Picker, Protocol):
    """A picker that can order positions from the totals alone (the fast path).

    `rank(endpoints, totals)` returns the positions `pick` would return the entries of, in
    the same order and drawing the same random numbers, so no `ScoredEndpoint` need exist
    for candidates nobody reads.
    """

    def rank(self, endpoints: Sequence[Endpoint], totals: Sequence[float]) -> list[int]: ...


@dataclass
class WeightedScorer:
    scorer: Scorer
    weight: float


@dataclass
class Profile:
    """One scheduling recipe: filters in order, weighted scorers, one picker."""

    name: str
    filters: list[Filter]
    scorers: list[WeightedScorer]
    picker: Picker

    def plugins(self) -> list[object]:
        """Every distinct plugin instance in this profile (a plugin may play several roles)."""
        seen: dict[int, object] = {}
        for plugin in [*self.filters, *(w.scorer for w in self.scorers), self.picker]:
            seen.setdefault(id(plugin), plugin)
        return list(seen.values())


class Scheduler:
    """Runs one profile over a pool's candidate endpoints.

    Not thread-safe by design: like the datastore, it lives on one event loop.
    """

    def __init__(self, profile: Profile) -> None:
        self._profile = profile
        # What depends only on the profile is worked out here, once, not per request.
        self._names = [w.scorer.name for w in profile.scorers]
        self._weights = [w.weight for w in profile.scorers]
        self._columns = [_column(w.scorer) for w in profile.scorers]
        # Non-finite weights make NaN totals, whose order only the generic pick() reproduces.
        finite = all(math.isfinite(w) for w in self._weights)
        picker = profile.picker
        self._rank = picker.rank if finite and isinstance(picker, RankingPicker) else None
        plugins = profile.plugins()
        self._routed_hooks = [p.on_routed for p in plugins if hasattr(p, "on_routed")]  # type: ignore[attr-defined]
        self._completed_hooks = [p.on_completed for p in plugins if hasattr(p, "on_completed")]  # type: ignore[attr-defined]
        self._finished_hooks = [p.on_finished for p in plugins if hasattr(p, "on_finished")]  # type: ignore[attr-defined]
        self._removed_hooks = [
            p.on_endpoint_removed  # type: ignore[attr-defined]
            for p in plugins
            if hasattr(p, "on_endpoint_removed")
        ]
        self._header_hooks = [p.response_headers for p in plugins if hasattr(p, "response_headers")]  # type: ignore[attr-defined]
        self._path_hooks = [p.endpoint_for_path for p in plugins if hasattr(p, "endpoint_for_path")]  # type: ignore[attr-defined]
        readers = [p for p in plugins if hasattr(p, "needs_answer")]
        self._answer_hooks = [p.needs_answer for p in readers]  # type: ignore[attr-defined]
        # Which APIs' answers those plugins read, known from the path alone (a plugin without
        # `answer_kinds` reads any); a plugin that sets answer headers needs every answer.
        kinds = [getattr(p, "answer_kinds", None) for p in readers]
        self._reads_every_answer = bool(self._header_hooks) or any(k is None for k in kinds)
        self._answer_kinds: frozenset[str] = frozenset().union(*(k for k in kinds if k is not None))

    @property
    def profile(self) -> Profile:
        return self._profile

    @property
    def profile_name(self) -> str:
        return self._profile.name

    def plugins(self) -> list[object]:
        """Every distinct plugin this scheduler runs (a P/D scheduler runs two profiles)."""
        return self._profile.plugins()

    @cached_property
    def _prepare_hooks(self) -> list[Callable[[Mapping[str, Any]], Awaitable[None]]]:
        return [p.prepare for p in self.plugins() if hasattr(p, "prepare")]  # type: ignore[attr-defined]

    @property
    def prepares(self) -> bool:
        """Whether a plugin has work to do before scheduling that must not hold the event loop."""
        return bool(self._prepare_hooks)

    async def prepare(self, body: Mapping[str, Any]) -> None:
        """Plugins' work before `schedule` (precise-prefix: tokenizing a long new prompt in a
        worker thread); asked only by a data plane that can wait for it (`route_async`)."""
        for hook in self._prepare_hooks:
            await hook(body)

    def schedule(self, req: SchedulingRequest, candidates: Sequence[Endpoint]) -> SchedulingResult:
        """Filter, score and order `candidates` for `req`.

        An empty `ranked` with `shed=False` means nothing can serve the request (the caller
        answers 503); with `shed=True` a filter or scorer rejected it on purpose (429).
        """
        start = time.perf_counter()
        filtered_out: dict[str, str] = {}
        endpoints = self._apply_subset(req, candidates, filtered_out)
        for flt in self._profile.filters:
            if not endpoints:
                break
            try:
                kept = flt.filter(req, endpoints)
            except ShedRequest as shed:
                return self._shed(endpoints, f"{flt.name}: {shed.reason}", filtered_out, start)
            if not kept and flt.soft:
                continue
            if len(kept) != len(endpoints):
                keep = set(kept)
                for endpoint in endpoints:
                    if endpoint not in keep:
                        filtered_out[endpoint.name] = flt.name
            endpoints = kept
        if not endpoints:
            return SchedulingResult(self._profile.name, [], filtered_out, time.perf_counter() - start)
        try:
            columns = self._score_columns(req, endpoints)
        except ShedRequest as shed:  # a scorer that predicts no endpoint can serve it (predicted-latency)
            return self._shed(endpoints, shed.reason, filtered_out, start)
        totals = self._totals(columns, len(endpoints))
        ranked: Sequence[ScoredEndpoint]
        if self._rank is not None:
            ranked = Ranking(endpoints, self._rank(endpoints, totals), totals, self._names, columns)
        else:
            names = self._names
            scored = [
                ScoredEndpoint(e, total, dict(zip(names, values, strict=True)))
                for e, total, *values in zip(endpoints, totals, *columns, strict=True)
            ]
            ranked = self._profile.picker.pick(scored)
        return SchedulingResult(self._profile.name, ranked, filtered_out, time.perf_counter() - start)

    def _shed(
        self, endpoints: list[Endpoint], reason: str, filtered_out: dict[str, str], start: float
    ) -> SchedulingResult:
        for endpoint in endpoints:
            filtered_out[endpoint.name] = reason
        return SchedulingResult(self._profile.name, [], filtered_out, time.perf_counter() - start, shed=True)

    def _apply_subset(
        self, req: SchedulingRequest, candidates: Sequence[Endpoint], filtered_out: dict[str, str]
    ) -> list[Endpoint]:
        if req.subset is None:
            return list(candidates)
        kept = []
        for endpoint in candidates:
            if endpoint.hostport in req.subset or f"{endpoint.address}:{endpoint.port}" in req.subset:
                kept.append(endpoint)
            else:
                filtered_out[endpoint.name] = "subset"
        return kept

    def _score_columns(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[list[float]]:
        """One column of scores in [0, 1] per scorer, aligned with `endpoints`."""
        columns = []
        for name, column in zip(self._names, self._columns, strict=True):
            try:
                columns.append(column(req, endpoints))
            except ShedRequest as shed:
                raise ShedRequest(f"{name}: {shed.reason}") from None
        return columns

    def _totals(self, columns: list[list[float]], count: int) -> list[float]:
        """Weighted sums, added scorer by scorer in profile order (as `sum` over a row did in 3.11).

        Column-wise in C (`map` over two lists) instead of a Python loop per endpoint; a weight
        of 1 needs no multiplication, since 1 * v == v exactly.
        """
        if not columns:
            return [0.0] * count
        if count <= _ROW_WISE_UP_TO:
            # A few candidates: a row at a time costs less than building a list per column
            # (the same additions in the same order, so the same floats).
            pairs = list(zip(self._weights, columns, strict=True))
            rows: list[float] = []
            for i in range(count):
                row: float | None = None
                for weight, column in pairs:
                    value = column[i] if weight == 1 else weight * column[i]
                    row = value if row is None else row + value
                assert row is not None
                rows.append(row)
            return rows
        totals: list[float] | None = None
        for weight, column in zip(self._weights, columns, strict=True):
            weighted = column if weight == 1 else list(map(mul, repeat(weight), column))
            totals = weighted if totals is None else list(map(add, totals, weighted))
        assert totals is not None
        return totals

    # -- lifecycle hooks, called by the request core ---------------------------------
    def on_routed(self, req: SchedulingRequest, endpoint: Endpoint) -> None:
        """The request was sent to `endpoint` (stateful plugins learn from it)."""
        for hook in self._routed_hooks:
            hook(req, endpoint)

    def on_completed(self, req: SchedulingRequest, endpoint: Endpoint) -> None:
        """The request finished on `endpoint`, on any exit path."""
        for hook in self._completed_hooks:
            hook(req, endpoint)

    def on_finished(self, req: SchedulingRequest, endpoint: Endpoint, record: RequestRecord) -> None:
        """The request's outcome on the endpoint that served it (latencies, token counts)."""
        for hook in self._finished_hooks:
            hook(req, endpoint, record)

    @property
    def adds_response_headers(self) -> bool:
        """Whether any plugin of the profile sets response headers (the Director skips asking if not)."""
        return bool(self._header_hooks)

    def response_headers(self, req: SchedulingRequest, picks: Mapping[str, Endpoint]) -> Mapping[str, str]:
        """Headers plugins set on the client's response (llm-d's ResponseHeaderProcessor).

        `picks` maps a profile name to the endpoint it chose; "" is the one that served.
        A profile without such plugins answers an empty mapping without a call.
        """
        if not self._header_hooks:
            return _NO_HEADERS
        headers: dict[str, str] = {}
        for hook in self._header_hooks:
            headers.update(hook(req, picks))
        return headers

    def reads_answers(self, kind: str) -> bool:
        """Whether a plugin may need the answer of a request to API `kind` (request.body's
        BodyKind): to set its headers, or to learn from its body. A data plane that reads only
        a sample of answers reads every one of these; it asks before the body is read."""
        return self._reads_every_answer or kind in self._answer_kinds

    def needs_answer(self, req: SchedulingRequest) -> bool:
        """Whether a plugin must read this request's answer (a data plane that reads only a
        sample of answers, the picker behind Envoy, asks for this one)."""
        return any(hook(req) for hook in self._answer_hooks)

    def on_endpoint_removed(self, name: str) -> None:
        """An endpoint left the pool: plugins drop what they remember about it."""
        for hook in self._removed_hooks:
            hook(name)

    def endpoint_for_path(self, path: str) -> str | None:
        """The endpoint a request without a body must go to, known from its path alone (a stored
        response fetched by id: `stored-response-filter`), or None: any ready endpoint will do."""
        for hook in self._path_hooks:
            name = hook(path)
            if name is not None:
                return str(name)
        return None


def _column(scorer: Scorer) -> Column:
    """How to read `scorer` as a column: its own fast path, or its dict clamped to [0, 1]."""
    if isinstance(scorer, ColumnScorer):
        return scorer.score_column

    def clamped(req: SchedulingRequest, endpoints: list[Endpoint]) -> list[float]:
        get = scorer.score(req, endpoints).get
        # clamp to [0, 1]; NaN → 0 (both comparisons are false for NaN); left out → 0
        return [v if 0.0 <= v <= 1.0 else (1.0 if v > 1.0 else 0.0) for v in (get(e, 0.0) for e in endpoints)]

    return clamped
