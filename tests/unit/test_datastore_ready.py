"""A pool's ready list, made when the pool changes instead of once per request.

`Datastore.ready_endpoints` gives one list object until an endpoint of the pool is added or
removed or changes readiness (written through `Datastore.set_ready`, as `scrape.Readiness`
writes it). It must answer exactly as a fresh list would, whatever the order of changes.
Budget: ≈2 s."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.state import Datastore, Endpoint, EndpointMetrics, Pool

POOLS = ("default/a", "default/b")
NAMES = ("e0", "e1")

_operations = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), st.sampled_from(POOLS), st.sampled_from(NAMES), st.booleans()),
        st.tuples(st.just("remove"), st.sampled_from(POOLS), st.sampled_from(NAMES)),
        st.tuples(st.just("ready"), st.sampled_from(POOLS), st.sampled_from(NAMES), st.booleans()),
        st.tuples(st.just("scrape"), st.sampled_from(POOLS), st.sampled_from(NAMES), st.integers(0, 9)),
        st.tuples(st.just("delete pool"), st.sampled_from(POOLS), st.just("")),
    ),
    max_size=40,
)


def _store() -> Datastore:
    store = Datastore()
    for key in POOLS:
        namespace, name = key.split("/")
        store.upsert_pool(Pool(namespace, name, {"app": name}, [8000]))
    return store


@settings(max_examples=300, deadline=None)
@given(_operations)
def test_the_kept_list_answers_as_a_fresh_one(operations: list[tuple[object, ...]]) -> None:
    store = _store()
    for pool in POOLS:  # every endpoint there from the start, so that each change finds its target
        for name in NAMES:
            store.upsert_endpoint(Endpoint(name, "10.0.0.1", 8000, pool))
    kept: dict[str, tuple[list[Endpoint], list[tuple[int, bool]]]] = {}
    for op in operations:
        kind, pool, name = str(op[0]), str(op[1]), str(op[2])
        endpoint = store.endpoint(pool, name)
        if kind == "upsert":
            store.upsert_endpoint(Endpoint(name, "10.0.0.1", 8000, pool, ready=bool(op[3])))
        elif kind == "remove":
            store.remove_endpoint(pool, name)
        elif kind == "delete pool":
            store.delete_pool(pool)
        elif endpoint is not None and kind == "ready":
            store.set_ready(endpoint, bool(op[3]))
        elif endpoint is not None:  # a scrape: new metrics, the same readiness
            endpoint.metrics = EndpointMetrics(waiting_queue_size=int(op[3]))  # type: ignore[call-overload]
        for key in POOLS:  # every pool asked after every change, as requests would
            ready = store.ready_endpoints(key)
            fresh = [e for e in store.endpoints(key) if e.ready]
            assert ready == fresh
            state = [(id(e), e.ready) for e in store.endpoints(key)]
            before = kept.get(key)
            if before is not None and before[0] is ready:
                assert before[1] == state  # kept only while nothing it depends on changed
            kept[key] = (ready, state)


def test_the_list_is_one_object_until_the_pool_changes() -> None:
    store = _store()
    first = store.upsert_endpoint(Endpoint("e0", "10.0.0.1", 8000, "default/a"))
    other = store.upsert_endpoint(Endpoint("e1", "10.0.0.2", 8000, "default/b"))
    ready = store.ready_endpoints("default/a")
    assert store.ready_endpoints("default/a") is ready == [first]
    store.set_ready(other, False)  # another pool's endpoint
    first.metrics = EndpointMetrics(waiting_queue_size=3)  # a scrape: readiness is the same
    store.set_ready(first, True)  # no change
    assert store.ready_endpoints("default/a") is ready
    for change in (
        lambda: store.set_ready(first, False),
        lambda: store.set_ready(first, True),
        lambda: store.upsert_endpoint(Endpoint("e2", "10.0.0.3", 8000, "default/a")),
        lambda: store.remove_endpoint("default/a", "e2"),
    ):
        change()
        assert store.ready_endpoints("default/a") is not ready
        ready = store.ready_endpoints("default/a")


def test_only_the_datastore_writes_an_endpoints_readiness() -> None:
    """A write that went round `Datastore.set_ready` would leave the pool's kept ready list as
    it was. (`self.ready = ...` is an object's own field: the simulator's replica state.)"""
    src = Path(__file__).resolve().parents[2] / "src" / "inferpool"
    writes = []
    for path in src.rglob("*.py"):
        if path.parts[-2:] == ("state", "datastore.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Attribute) and sub.attr == "ready":
                        if ast.unparse(sub.value) not in ("self", "self.state"):
                            writes.append(f"{path.relative_to(src)}:{node.lineno}: {ast.unparse(sub)}")
    assert not writes, writes
