"""What the scheduler is asked and what it answers; shared by the framework and its callers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from inferpool.records import CandidateScore
from inferpool.state import Endpoint


@dataclass
class SchedulingRequest:
    """The facts about one request that plugins may use."""

    request_id: str
    pool: str  # pool key "namespace/name"
    target_model: str  # model name after rewrite (what the model server will see)
    prompt: str  # prompt text, or the chat messages flattened, for prefix hashing
    priority: int = 0  # InferenceObjective priority or criticality mapped to one
    prompt_tokens_estimate: int = 0  # rough token count (len(prompt) / 4)
    max_tokens: int | None = None
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased request headers
    subset: frozenset[str] | None = None  # ext_proc subset hint: allowed "ip:port"s, None = all
    # True: target_model is a LoRA adapter; False: the base model (LoRA affinity is neutral);
    # None: unknown, scored as an adapter like upstream does.
    lora_adapter: bool | None = None
    # The decoded OpenAI body (read only), for plugins that tokenize the prompt as the engine does.
    body: Mapping[str, Any] | None = None
    # Which API the body is (request.body's BodyKind: "completion", "chat", "responses", ...);
    # "" when the caller does not say (benchmarks building requests without a path).
    api: str = ""


@dataclass
class ScoredEndpoint:
    endpoint: Endpoint
    total: float
    scores: dict[str, float]  # scorer name -> raw score 0..1 (before weighting)


class Ranking(Sequence[ScoredEndpoint]):
    """The scheduler's ranked candidates, built on access.

    A decision over a large pool orders every candidate, but callers read only the first
    few (the pick, a handful of fallbacks, the top scores for the record). So the
    `ScoredEndpoint`s and their per-scorer dicts are made when an entry is read, from the
    score columns the scheduler computed; reading an entry twice gives the same object.
    Compares equal to a list holding the same entries.
    """

    __slots__ = ("_columns", "_endpoints", "_items", "_names", "_order", "_totals")

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        order: Sequence[int],
        totals: Sequence[float],
        names: Sequence[str],
        columns: Sequence[Sequence[float]],
    ) -> None:
        self._endpoints = endpoints  # candidates in scoring order
        self._order = order  # positions in `endpoints`, best first
        self._totals = totals  # weighted totals, by position
        self._names = names  # scorer names, one per column
        self._columns = columns  # per scorer, the clamped score of each position
        self._items: list[ScoredEndpoint | None] | None = None

    def __len__(self) -> int:
        return len(self._order)

    @overload
    def __getitem__(self, index: int) -> ScoredEndpoint: ...

    @overload
    def __getitem__(self, index: slice) -> list[ScoredEndpoint]: ...

    def __getitem__(self, index: int | slice) -> ScoredEndpoint | list[ScoredEndpoint]:
        if isinstance(index, slice):
            return [self._item(rank) for rank in range(*index.indices(len(self._order)))]
        if index < 0:
            index += len(self._order)
        if not 0 <= index < len(self._order):
            raise IndexError("ranking index out of range")
        return self._item(index)

    def __iter__(self) -> Iterator[ScoredEndpoint]:
        return map(self._item, range(len(self._order)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Ranking | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to lists, so unhashable like them

    def __repr__(self) -> str:
        return f"Ranking({list(self)!r})"

    def endpoints(self) -> list[Endpoint]:
        """The endpoints best first, without building a `ScoredEndpoint` for each."""
        return list(map(self._endpoints.__getitem__, self._order))

    def top(self, count: int) -> Ranking:
        """The first `count` entries as a ranking of their own, holding only their figures (a
        record outlives its request: at 1,000 endpoints a whole ranking is ≈140 KB)."""
        positions = self._order[:count]
        return Ranking(
            [self._endpoints[p] for p in positions],
            list(range(len(positions))),
            [self._totals[p] for p in positions],
            self._names,
            [[column[p] for p in positions] for column in self._columns],
        )

    def candidate_scores(self, count: int) -> tuple[CandidateScore, ...]:
        """The first `count` entries as the record keeps them, read straight off the columns
        (no `ScoredEndpoint` built for them: the record is made for every request)."""
        names, columns, totals, endpoints = self._names, self._columns, self._totals, self._endpoints
        out = []
        for pos in self._order[:count]:
            endpoint = endpoints[pos]
            scores = {name: column[pos] for name, column in zip(names, columns, strict=True)}
            out.append(CandidateScore(endpoint.name, endpoint.hostport, totals[pos], scores))
        return tuple(out)

    def _item(self, rank: int) -> ScoredEndpoint:
        items = self._items
        if items is None:
            items = self._items = [None] * len(self._order)
        item = items[rank]
        if item is None:
            pos = self._order[rank]
            scores = {name: column[pos] for name, column in zip(self._names, self._columns, strict=True)}
            item = items[rank] = ScoredEndpoint(self._endpoints[pos], self._totals[pos], scores)
        return item


@dataclass
class SchedulingResult:
    """Ranked candidates (best first) plus the reasons, for logs and the dashboard."""

    profile: str
    ranked: Sequence[ScoredEndpoint]  # a list, or a `Ranking` that builds its entries on access
    filtered_out: dict[str, str] = field(default_factory=dict)  # endpoint name -> filter that removed it
    duration_s: float = 0.0
    # A filter decided the request must be rejected now (legacy-v0.3 shedding); the caller answers 429.
    # `ranked` is then empty and `filtered_out` says why.
    shed: bool = False
    # P/D disaggregation: the prefill profile's result when this request's prompt is to be
    # prefilled on another endpoint than the one that decodes it (`ranked`); None = aggregated.
    prefill: SchedulingResult | None = None

    @property
    def endpoints(self) -> list[Endpoint]:
        if isinstance(self.ranked, Ranking):
            return self.ranked.endpoints()
        return [s.endpoint for s in self.ranked]
