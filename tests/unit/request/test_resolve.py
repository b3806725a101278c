from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.errors import InferenceError
from inferpool.labels import LabelSelector
from inferpool.request.resolve import RewriteRules, _matching_rule, resolve, weighted_pick
from inferpool.state import (
    Criticality,
    Datastore,
    ModelRewrite,
    ModelRoute,
    Objective,
    Pool,
    PoolBinding,
    RewriteRule,
    RewriteTarget,
    TargetModel,
)

POOL = "default/vllm-llama3-8b-instruct"


def _store() -> Datastore:
    store = Datastore()
    store.upsert_pool(Pool("default", "vllm-llama3-8b-instruct", {"app": "vllm"}, [8000]))
    return store


def _guide_store() -> Datastore:
    """The guide's two InferenceModels."""
    store = _store()
    store.upsert_model(
        ModelRoute(
            "default",
            "food-review",
            "food-review",
            "vllm-llama3-8b-instruct",
            Criticality.STANDARD,
            [TargetModel("food-review", 100)],
        )
    )
    store.upsert_model(
        ModelRoute(
            "default",
            "llama3-base-model",
            "meta-llama/Llama-3.1-8B-Instruct",
            "vllm-llama3-8b-instruct",
            Criticality.CRITICAL,
        )
    )
    return store


def test_unknown_model_is_openai_404() -> None:
    with pytest.raises(InferenceError) as info:
        resolve(_guide_store(), POOL, "no-such-model", {}, random.Random(0))
    err = info.value
    assert err.status == 404
    assert err.body() == {
        "error": {
            "message": "The model `no-such-model` does not exist.",
            "type": "NotFoundError",
            "param": "model",
            "code": 404,
        }
    }


def test_model_route_target_and_criticality() -> None:
    res = resolve(_guide_store(), POOL, "food-review", {}, random.Random(0))
    assert (res.target_model, res.source, res.priority) == ("food-review", "model", 0)
    assert res.criticality is Criticality.STANDARD
    base = resolve(_guide_store(), POOL, "meta-llama/Llama-3.1-8B-Instruct", {}, random.Random(0))
    assert (base.target_model, base.priority) == ("meta-llama/Llama-3.1-8B-Instruct", 1)


def test_sheddable_and_unset_criticality() -> None:
    store = _store()
    store.upsert_model(ModelRoute("default", "a", "a", "vllm-llama3-8b-instruct", Criticality.SHEDDABLE))
    store.upsert_model(ModelRoute("default", "b", "b", "vllm-llama3-8b-instruct", None))
    assert resolve(store, POOL, "a", {}, random.Random(0)).priority == -1
    assert resolve(store, POOL, "b", {}, random.Random(0)).priority == 0


def test_pure_v1_pool_passes_model_through() -> None:
    res = resolve(_store(), POOL, "anything", {}, random.Random(0))
    assert (res.target_model, res.source, res.priority) == ("anything", "passthrough", 0)


def test_models_of_other_pools_do_not_count() -> None:
    store = _store()
    store.upsert_model(ModelRoute("default", "x", "x", "other-pool"))
    assert resolve(store, POOL, "y", {}, random.Random(0)).source == "passthrough"


def test_header_rewrite_overrides_everything() -> None:
    store = _guide_store()
    store.upsert_rewrite(
        ModelRewrite(
            "default",
            "rw",
            PoolBinding(("vllm-llama3-8b-instruct",)),
            [RewriteRule([], [RewriteTarget("z")])],
        )
    )
    headers = {"x-gateway-model-name-rewrite": "food-review-2"}
    res = resolve(store, POOL, "food-review", headers, random.Random(0))
    assert (res.target_model, res.source, res.priority) == ("food-review-2", "header", 0)
    # even a model no InferenceModel names: the route asked for this rewrite explicitly
    assert resolve(store, POOL, "unknown", headers, random.Random(0)).target_model == "food-review-2"


def test_v1_rewrite_rules_explicit_before_catch_all() -> None:
    store = _store()
    store.upsert_rewrite(
        ModelRewrite(
            "default",
            "a-rw",
            PoolBinding(("vllm-llama3-8b-instruct",)),
            [RewriteRule([], [RewriteTarget("fallback")]), RewriteRule(["gpt-4"], [RewriteTarget("llama")])],
        )
    )
    assert resolve(store, POOL, "gpt-4", {}, random.Random(0)).target_model == "llama"
    other = resolve(store, POOL, "other", {}, random.Random(0))
    assert (other.target_model, other.source) == ("fallback", "rewrite")


def test_rewrite_makes_model_known_in_v1alpha2_pool() -> None:
    store = _guide_store()
    store.upsert_rewrite(
        ModelRewrite(
            "default",
            "rw",
            PoolBinding(("vllm-llama3-8b-instruct",)),
            [RewriteRule(["alias"], [RewriteTarget("food-review")])],
        )
    )
    assert resolve(store, POOL, "alias", {}, random.Random(0)).target_model == "food-review"


def test_objective_header_sets_priority() -> None:
    store = _guide_store()
    store.upsert_objective(
        Objective("default", "batch", PoolBinding(("vllm-llama3-8b-instruct",)), priority=-5)
    )
    store.upsert_objective(Objective("default", "gold", PoolBinding(("other-pool",)), priority=50))
    res = resolve(
        store,
        POOL,
        "meta-llama/Llama-3.1-8B-Instruct",
        {"x-gateway-inference-objective": "batch"},
        random.Random(0),
    )
    assert (res.priority, res.objective) == (-5, "batch")
    # an objective of another pool, or an unknown one, falls back to the criticality
    res = resolve(
        store,
        POOL,
        "meta-llama/Llama-3.1-8B-Instruct",
        {"x-gateway-inference-objective": "gold"},
        random.Random(0),
    )
    assert (res.priority, res.objective) == (1, None)
    # in a pure v1 pool the objective is the only source of priority
    v1 = _store()
    v1.upsert_objective(Objective("default", "gold", PoolBinding(("vllm-llama3-8b-instruct",)), priority=7))
    assert resolve(v1, POOL, "m", {"x-gateway-inference-objective": "gold"}, random.Random(0)).priority == 7


def test_fairness_id_kept() -> None:
    res = resolve(_store(), POOL, "m", {"x-gateway-inference-fairness-id": "tenant-a"}, random.Random(0))
    assert res.fairness_id == "tenant-a"
    assert resolve(_store(), POOL, "m", {}, random.Random(0)).fairness_id is None


def test_model_route_weighted_targets() -> None:
    store = _store()
    store.upsert_model(
        ModelRoute(
            "default",
            "fr",
            "food-review",
            "vllm-llama3-8b-instruct",
            None,
            [TargetModel("fr-v1", 90), TargetModel("fr-v2", 10)],
        )
    )
    rng = random.Random(1)
    counts = Counter(resolve(store, POOL, "food-review", {}, rng).target_model for _ in range(10_000))
    assert abs(counts["fr-v1"] / 10_000 - 0.9) < 0.05


def test_same_seed_same_picks() -> None:
    items, weights = ["a", "b", "c"], [1, 2, 3]
    first = [weighted_pick(items, weights, random.Random(42)) for _ in range(5)]
    assert first == [weighted_pick(items, weights, random.Random(42)) for _ in range(5)]


def test_weighted_pick_edges() -> None:
    rng = random.Random(0)
    assert weighted_pick(["only"], [None], rng) == "only"
    with pytest.raises(ValueError):
        weighted_pick([], [], rng)
    counts = Counter(weighted_pick(["a", "b"], [None, None], rng) for _ in range(10_000))
    assert abs(counts["a"] / 10_000 - 0.5) < 0.05
    assert {weighted_pick(["a", "b"], [0, 5], rng) for _ in range(200)} == {"b"}


@settings(max_examples=25, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=1, max_value=1_000_000), min_size=1, max_size=10),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_weighted_pick_distribution(weights: list[int], seed: int) -> None:
    """Each target's share over 10,000 picks is within 5 points of weight / total."""
    rng = random.Random(seed)
    items = list(range(len(weights)))
    counts = Counter(weighted_pick(items, weights, rng) for _ in range(10_000))
    total = sum(weights)
    for item, weight in zip(items, weights, strict=True):
        assert abs(counts[item] / 10_000 - weight / total) <= 0.05


@settings(max_examples=15, deadline=None)
@given(n=st.integers(min_value=1, max_value=10), seed=st.integers(min_value=0, max_value=2**32))
def test_unweighted_targets_are_equal(n: int, seed: int) -> None:
    rng = random.Random(seed)
    counts = Counter(weighted_pick(list(range(n)), [None] * n, rng) for _ in range(10_000))
    for item in range(n):
        assert abs(counts[item] / 10_000 - 1 / n) <= 0.05


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["rewrite", "rewrite", "delete", "relabel", "ask"]),
            st.sampled_from(["r1", "r2", "r3"]),
            st.sampled_from(["gpt-4", "gpt-5", ""]),  # "": a catch-all rule
            st.sampled_from(["vllm", "other"]),
        ),
        max_size=30,
    )
)
def test_rewrite_rules_kept_per_configuration_answer_as_asked_each_time(
    steps: list[tuple[str, str, str, str]],
) -> None:
    """The rule per (pool, model) the Director keeps until the datastore changes is the rule a
    fresh look at the rewrites gives, across rewrites added, replaced and deleted and pools whose
    labels (which a poolSelector reads) change."""
    store = _store()
    rules = RewriteRules()
    for op, name, match, label in steps:
        if op == "rewrite":
            binding = (
                PoolBinding((), LabelSelector({"app": label}))
                if name == "r3"
                else PoolBinding(("vllm-llama3-8b-instruct",))
            )
            rule = RewriteRule([match] if match else [], [RewriteTarget(f"{name}-{match or 'any'}")])
            store.upsert_rewrite(ModelRewrite("default", name, binding, [rule]))
        elif op == "delete":
            store.delete_rewrite(f"default/{name}")
        elif op == "relabel":
            store.upsert_pool(Pool("default", "vllm-llama3-8b-instruct", {"app": label}, [8000]))
        for model in ("gpt-4", "gpt-5", "llama"):
            assert rules.rule(store, POOL, model) == _matching_rule(store.rewrites(POOL), model), (op, model)
