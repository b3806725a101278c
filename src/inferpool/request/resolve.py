"""Model resolution: which model name the model server sees, and the request's priority.

Order (first that applies wins for the target name):
  1. header `x-gateway-model-name-rewrite` (set by an HTTPRoute filter or the client);
  2. a v1 InferenceModelRewrite rule matching the incoming model (explicit match before a
     catch-all rule), weighted pick among its targets;
  3. the v1alpha2 InferenceModel whose `modelName` is the incoming model: weighted pick
     among `targetModels`, or `modelName` itself when it has none;
  4. a pool with no InferenceModels at all (a pure v1 pool) passes the model through.
Anything else is the 404 vLLM would give for an unknown model.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Literal, TypeVar

import msgspec

from inferpool.errors import InferenceError
from inferpool.state import (
    Criticality,
    Datastore,
    ModelRewrite,
    ModelRoute,
    RewriteRule,
    criticality_priority,
)

MODEL_REWRITE_HEADER = "x-gateway-model-name-rewrite"
OBJECTIVE_HEADER = "x-gateway-inference-objective"
FAIRNESS_HEADER = "x-gateway-inference-fairness-id"

RewriteSource = Literal["header", "rewrite", "model", "passthrough"]
T = TypeVar("T")


# a Struct: built per request, and faster to build than a frozen dataclass
class Resolution(msgspec.Struct, frozen=True):
    """The outcome of resolving one request's model and priority."""

    incoming_model: str
    target_model: str
    source: RewriteSource  # which rule chose target_model
    priority: int
    criticality: Criticality | None  # from the InferenceModel, when there is one
    objective: str | None  # InferenceObjective name that set the priority
    fairness_id: str | None
    model_route: str | None  # InferenceModel resource name


def weighted_pick(items: Sequence[T], weights: Sequence[int | None], rng: random.Random) -> T:
    """Pick one item by weight; all-None (or any None, which validation forbids) means equal weights."""
    if not items:
        raise ValueError("weighted_pick needs at least one item")
    if len(items) == 1:
        return items[0]
    if any(w is None for w in weights):
        return items[rng.randrange(len(items))]
    ints = [int(w or 0) for w in weights]
    total = sum(ints)
    if total <= 0:
        return items[rng.randrange(len(items))]
    point = rng.randrange(total)
    for item, weight in zip(items, ints, strict=True):
        if point < weight:
            return item
        point -= weight
    return items[-1]  # unreachable: point < total


class RewriteRules:
    """The InferenceModelRewrite rule for each (pool, incoming model), kept until the datastore
    changes: per configuration change, not per request (the rewrites bound to a pool were
    filtered and sorted for every request: +20 µs each with 50 of them)."""

    KEPT = 4096  # (pairs: client-chosen model names must not grow it without bound)

    def __init__(self) -> None:
        self._generation = -1
        self._rules: dict[tuple[str, str], RewriteRule | None] = {}

    def rule(self, datastore: Datastore, pool: str, model: str) -> RewriteRule | None:
        if not datastore.has_rewrites:
            return None  # the usual case: no InferenceModelRewrite at all
        if datastore.generation != self._generation or len(self._rules) >= self.KEPT:
            self._rules.clear()
            self._generation = datastore.generation
        key = (pool, model)
        try:
            return self._rules[key]
        except KeyError:
            rule = self._rules[key] = _matching_rule(datastore.rewrites(pool), model)
            return rule


def resolve(
    datastore: Datastore,
    pool: str,
    model: str,
    headers: Mapping[str, str],
    rng: random.Random,
    rules: RewriteRules | None = None,
) -> Resolution:
    """Resolve `model` on `pool`; `headers` must have lower-case names. Raises InferenceError(404).
    `rules`: the rewrite rules kept per configuration (the data planes' Director keeps one)."""
    route = datastore.model_for(pool, model)
    rule = (
        _matching_rule(datastore.rewrites(pool), model)
        if rules is None
        else rules.rule(datastore, pool, model)
    )
    header_target = headers.get(MODEL_REWRITE_HEADER, "").strip()

    target: str
    source: RewriteSource
    if header_target:
        target, source = header_target, "header"
    elif rule is not None and rule.targets:
        pick = weighted_pick(rule.targets, [t.weight for t in rule.targets], rng)
        target, source = pick.model, "rewrite"
    elif route is not None:
        target, source = _route_target(route, rng), "model"
    elif not datastore.models(pool):
        target, source = model, "passthrough"
    else:
        note = ""
        if _served_in(datastore, pool, model):  # the guide's cad-fabricator: loaded, never declared
            note = (
                f" The servers of InferencePool {pool} have it loaded, but no InferenceModel of the"
                " pool names it: add one to route it."
            )
        raise model_not_found(model, note)

    priority, objective = _priority(datastore, pool, route, headers)
    return Resolution(
        incoming_model=model,
        target_model=target,
        source=source,
        priority=priority,
        criticality=route.criticality if route is not None else None,
        objective=objective,
        fairness_id=headers.get(FAIRNESS_HEADER) or None,
        model_route=route.name if route is not None else None,
    )


def model_not_found(model: str, note: str = "") -> InferenceError:
    """The exact 404 vLLM answers for an unknown model (minus its alias list), and `note`."""
    return InferenceError(404, f"The model `{model}` does not exist.{note}", param="model")


def _served_in(datastore: Datastore, pool: str, model: str) -> bool:
    """Whether a server of `pool` reports serving `model` (an adapter or its own model)."""
    return any(
        e.metrics.has_adapter(model) or e.metrics.lists_model(model) for e in datastore.endpoints(pool)
    )


def _route_target(route: ModelRoute, rng: random.Random) -> str:
    if not route.targets:
        return route.model_name
    pick = weighted_pick(route.targets, [t.weight for t in route.targets], rng)
    return pick.name


def _matching_rule(rewrites: list[ModelRewrite], model: str) -> RewriteRule | None:
    """First rule naming `model`, else the first catch-all rule (empty match list); stable by resource key."""
    if not rewrites:  # the usual case: no InferenceModelRewrite, nothing to sort
        return None
    catch_all: RewriteRule | None = None
    for rewrite in sorted(rewrites, key=lambda r: (r.namespace, r.name)):
        for rule in rewrite.rules:
            if model in rule.models:
                return rule
            if not rule.models and catch_all is None:
                catch_all = rule
    return catch_all


def _priority(
    datastore: Datastore, pool: str, route: ModelRoute | None, headers: Mapping[str, str]
) -> tuple[int, str | None]:
    """Objective named by header first, then the InferenceModel's criticality, else Standard (0)."""
    name = headers.get(OBJECTIVE_HEADER, "").strip()
    if name:
        objective = datastore.objective(pool, name)
        if objective is not None:
            return objective.priority, objective.name
    if route is not None:
        return criticality_priority(route.criticality), None
    return 0, None
