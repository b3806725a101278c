"""adapter-loaded-filter: LoRA requests never go where the adapter is known to be absent."""

from __future__ import annotations

from inferpool.scheduling import load_scheduler

from .conftest import ep, req


def test_default_profile_sends_adapter_requests_only_where_it_is_loaded() -> None:
    without = ep("pod-0", loaded_adapters=frozenset())  # idle and empty: best by load
    with_it = ep("pod-1", queue=3, kv=0.5, loaded_adapters=frozenset({"food-review"}))
    scheduler = load_scheduler("default")
    for _ in range(20):
        result = scheduler.schedule(req(model="food-review", lora_adapter=True), [without, with_it])
        assert result.endpoints == [with_it]
        assert result.filtered_out == {"pod-0": "adapter-loaded-filter"}


def test_unknown_loaded_sets_and_base_model_requests_pass() -> None:
    unknown = ep("pod-0")  # loaded_adapters None: never read
    empty = ep("pod-1", loaded_adapters=frozenset())
    scheduler = load_scheduler("default")
    adapter = scheduler.schedule(req(model="food-review", lora_adapter=True), [unknown, empty])
    assert {e.name for e in adapter.endpoints} == {"pod-0"}
    base = scheduler.schedule(req(model="base", lora_adapter=False), [unknown, empty])
    assert {e.name for e in base.endpoints} == {"pod-0", "pod-1"}


def test_soft_when_no_endpoint_has_the_adapter_yet() -> None:
    a = ep("pod-0", loaded_adapters=frozenset({"other"}))
    b = ep("pod-1", loaded_adapters=frozenset())
    result = load_scheduler("default").schedule(req(model="food-review", lora_adapter=True), [a, b])
    assert {e.name for e in result.endpoints} == {"pod-0", "pod-1"}


def test_an_adapter_running_there_counts_as_loaded() -> None:
    a = ep("pod-0", loaded_adapters=frozenset(), active_adapters=frozenset({"food-review"}))
    b = ep("pod-1", loaded_adapters=frozenset())
    result = load_scheduler("default").schedule(req(model="food-review", lora_adapter=True), [a, b])
    assert [e.name for e in result.endpoints] == ["pod-0"]
