"""The datastore's lookup of a request's InferenceModel by pool and model name: an index made on
the first lookup after a change (a request resolves its model by it, per request, and a
multi-LoRA pool declares hundreds), answering as the scan in insertion order did."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.state import Criticality, ModelRoute, Pool
from inferpool.state.datastore import Datastore

POOLS = ("default/a", "default/b", "other/a")


def scanned(store: Datastore, pool: str, model: str) -> ModelRoute | None:
    """The plain definition: the first declared route of `pool` naming `model` (oldest wins)."""
    return next((r for r in store.models() if r.pool_key == pool and r.model_name == model), None)


def route(namespace: str, name: str, model: str, pool: str) -> ModelRoute:
    return ModelRoute(namespace, name, model, pool, Criticality.STANDARD)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["upsert", "upsert", "delete", "lookup"]),
            st.sampled_from(["default", "other"]),
            st.sampled_from(["r1", "r2", "r3", "r4"]),
            st.sampled_from(["base", "lora-a", "lora-b"]),
            st.sampled_from(["a", "b"]),
        ),
        max_size=40,
    )
)
def test_the_index_answers_as_the_scan(steps: list[tuple[str, str, str, str, str]]) -> None:
    store = Datastore()
    for namespace, name in (("default", "a"), ("default", "b"), ("other", "a")):
        store.upsert_pool(Pool(namespace, name, {"app": "vllm"}, [8000]))
    for op, namespace, name, model, pool in steps:
        if op == "upsert":
            store.upsert_model(route(namespace, name, model, pool))
        elif op == "delete":
            store.delete_model(f"{namespace}/{name}")
        for key in POOLS:
            for m in ("base", "lora-a", "lora-b", "unknown"):
                assert store.model_for(key, m) == scanned(store, key, m), (key, m)


def test_oldest_wins_and_a_changed_route_is_seen() -> None:
    store = Datastore()
    store.upsert_model(route("default", "first", "lora-a", "p"))
    store.upsert_model(route("default", "second", "lora-a", "p"))
    assert store.model_for("default/p", "lora-a").name == "first"  # type: ignore[union-attr]
    store.upsert_model(route("default", "first", "lora-b", "p"))  # renamed in place: keeps its age
    assert store.model_for("default/p", "lora-a").name == "second"  # type: ignore[union-attr]
    assert store.model_for("default/p", "lora-b").name == "first"  # type: ignore[union-attr]
    store.delete_model("default/second")
    assert store.model_for("default/p", "lora-a") is None


def test_a_thousand_adapters_resolve_without_a_scan_per_request() -> None:
    """Behaviour, not time: the index is made once, then every lookup is a dictionary's."""
    store = Datastore()
    for i in range(1000):
        store.upsert_model(route("default", f"m{i}", f"adapter-{i}", "p"))
    names = [f"adapter-{i}" for i in range(1000)]
    random.Random(3).shuffle(names)
    assert all(store.model_for("default/p", n).model_name == n for n in names)  # type: ignore[union-attr]
    assert store._model_index is not None and len(store._model_index) == 1000
