"""/api/state lists, per pool, the InferenceObjectives a request may name there, highest priority
first (an objective bound to another pool, or in another namespace, is not listed)."""

from __future__ import annotations

from inferpool.observe.views import state_view
from inferpool.state import Datastore, Pool
from inferpool.state.objects import Objective, PoolBinding


def test_each_pool_lists_the_objectives_that_apply_to_it() -> None:
    store = Datastore()
    store.upsert_pool(Pool("default", "a", {"app": "a"}, [8000]))
    store.upsert_pool(Pool("default", "b", {"app": "b"}, [8000]))
    store.upsert_objective(Objective("default", "batch", PoolBinding(("a",)), priority=-1))
    store.upsert_objective(Objective("default", "interactive", PoolBinding(("a", "b")), priority=10))
    store.upsert_objective(Objective("default", "standard", PoolBinding(("a",)), priority=0))
    store.upsert_objective(Objective("other", "elsewhere", PoolBinding(("a",)), priority=5))
    pools = {p["name"]: p for p in state_view(store)["pools"]}
    assert pools["a"]["objectives"] == [
        {"name": "interactive", "priority": 10},
        {"name": "standard", "priority": 0},
        {"name": "batch", "priority": -1},
    ]
    assert pools["b"]["objectives"] == [{"name": "interactive", "priority": 10}]
