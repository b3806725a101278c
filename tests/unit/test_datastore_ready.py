"""A pool's ready list and its saturation, made once per scrape instead of once per request.

`Datastore.ready_endpoints` gives one list object until an endpoint of the pool changes (added,
removed, its readiness or its metrics, written through the datastore), and the saturation
snapshot of that list is kept by its identity until a fresh endpoint's metrics would go stale
(`SaturationDetector.kept_snapshot`). Both must answer exactly as a fresh computation would,
whatever the order of changes and the passing of time. Budget: ≈2 s."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.admission.saturation import SaturationConfig, SaturationDetector
from inferpool.state import Datastore, Endpoint, EndpointMetrics, Pool

POOLS = ("default/a", "default/b")
NAMES = ("e0", "e1")

_operations = st.lists(
    st.one_of(
        st.tuples(st.just("upsert"), st.sampled_from(POOLS), st.sampled_from(NAMES), st.booleans()),
        st.tuples(st.just("remove"), st.sampled_from(POOLS), st.sampled_from(NAMES)),
        st.tuples(st.just("ready"), st.sampled_from(POOLS), st.sampled_from(NAMES), st.booleans()),
        st.tuples(
            st.just("scrape"),
            st.sampled_from(POOLS),
            st.sampled_from(NAMES),
            st.integers(0, 12),  # waiting
            st.floats(0.0, 1.0),  # KV-cache use
            st.floats(0.0, 3.0),  # how long ago it was scraped
        ),
        st.tuples(st.just("time"), st.floats(0.0, 1.5)),
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
def test_the_kept_list_and_snapshot_answer_as_fresh_ones(operations: list[tuple[object, ...]]) -> None:
    store = _store()
    for pool in POOLS:  # every endpoint there from the start, so that each change finds its target
        for name in NAMES:
            store.upsert_endpoint(Endpoint(name, "10.0.0.1", 8000, pool))
    now = [1000.0]
    detector = SaturationDetector(SaturationConfig(stale_after_s=2.0), clock=lambda: now[0])
    kept: dict[str, tuple[list[Endpoint], list[tuple[str, EndpointMetrics]]]] = {}
    for op in operations:
        if op[0] == "time":
            now[0] += float(op[1])  # type: ignore[arg-type]
        else:
            pool, name = str(op[1]), str(op[2])
            endpoint = store.endpoint(pool, name)
            if op[0] == "upsert":
                store.upsert_endpoint(Endpoint(name, "10.0.0.1", 8000, pool, ready=bool(op[3])))
            elif op[0] == "remove":
                store.remove_endpoint(pool, name)
            elif endpoint is not None and op[0] == "ready":
                store.set_ready(endpoint, bool(op[3]))
            elif endpoint is not None:
                waiting, kv, ago = op[3:]
                metrics = EndpointMetrics(
                    waiting_queue_size=int(waiting),  # type: ignore[call-overload]
                    kv_cache_usage=float(kv),  # type: ignore[arg-type]
                    scraped_at=now[0] - float(ago),  # type: ignore[arg-type]
                )
                store.set_metrics(endpoint, metrics)
        for pool in POOLS:  # every pool asked after every change, as requests would
            ready = store.ready_endpoints(pool)
            state = [(e.name, e.metrics) for e in store.endpoints(pool) if e.ready]
            assert [(e.name, e.metrics) for e in ready] == state
            before = kept.get(pool)
            assert before is None or before[0] is not ready or before[1] == state  # kept: unchanged
            kept[pool] = (ready, state)
            assert detector.kept_snapshot(pool, ready) == detector.snapshot(ready)


def test_the_list_is_one_object_until_the_pool_changes() -> None:
    store = _store()
    first = store.upsert_endpoint(Endpoint("e0", "10.0.0.1", 8000, "default/a"))
    other = store.upsert_endpoint(Endpoint("e1", "10.0.0.2", 8000, "default/b"))
    ready = store.ready_endpoints("default/a")
    assert store.ready_endpoints("default/a") is ready == [first]
    store.set_metrics(other, EndpointMetrics(waiting_queue_size=3))  # another pool's endpoint
    assert store.ready_endpoints("default/a") is ready
    store.set_ready(first, True)  # no change
    assert store.ready_endpoints("default/a") is ready
    for change in (
        lambda: store.set_metrics(first, replace(first.metrics, waiting_queue_size=1)),
        lambda: store.set_ready(first, False),
        lambda: store.set_ready(first, True),
        lambda: store.upsert_endpoint(Endpoint("e2", "10.0.0.3", 8000, "default/a")),
        lambda: store.remove_endpoint("default/a", "e2"),
    ):
        change()
        assert store.ready_endpoints("default/a") is not ready
        ready = store.ready_endpoints("default/a")


def test_a_kept_snapshot_ends_when_a_fresh_endpoint_goes_stale() -> None:
    store = _store()
    now = [100.0]
    detector = SaturationDetector(SaturationConfig(stale_after_s=2.0), clock=lambda: now[0])
    endpoint = store.upsert_endpoint(Endpoint("e0", "10.0.0.1", 8000, "default/a"))
    store.set_metrics(endpoint, EndpointMetrics(waiting_queue_size=1, scraped_at=99.0))
    ready = store.ready_endpoints("default/a")
    assert detector.kept_snapshot("default/a", ready).stale == 0
    now[0] = 101.0  # exactly stale_after_s after the scrape: still fresh
    assert detector.kept_snapshot("default/a", ready).stale == 0
    now[0] = 101.001  # past it, with no new scrape: the same list, now stale
    assert detector.kept_snapshot("default/a", ready).stale == 1
    assert store.ready_endpoints("default/a") is ready


def test_only_the_datastore_writes_an_endpoints_metrics_or_readiness() -> None:
    """A write that went round `Datastore.set_metrics` / `set_ready` would leave the pool's kept
    ready list, and its saturation, as they were. (`self.x = ...` is an object's own field.)"""
    src = Path(__file__).resolve().parents[2] / "src" / "inferpool"
    writes = []
    for path in src.rglob("*.py"):
        if path.parts[-2:] == ("state", "datastore.py") or "sim" in path.relative_to(src).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Attribute) and sub.attr in ("metrics", "ready"):
                        if ast.unparse(sub.value) != "self":
                            writes.append(f"{path.relative_to(src)}:{node.lineno}: {ast.unparse(sub)}")
    assert not writes, writes
