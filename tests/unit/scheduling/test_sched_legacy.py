"""The legacy-v0.3 profile: the upstream v0.3.0 decision tree, including shedding."""

from __future__ import annotations

import random

from inferpool.scheduling import load_scheduler
from inferpool.scheduling.plugins.filters import least_by, lora_soft_affinity
from inferpool.scheduling.plugins.legacy_v03 import LegacyV03Filter

from .conftest import ep, req

CRITICAL, STANDARD, SHEDDABLE = 1, 0, -1


def names(endpoints: list) -> set[str]:  # type: ignore[type-arg]
    return {e.name for e in endpoints}


def test_least_band() -> None:
    endpoints = [ep(f"e-{i}", queue=q) for i, q in enumerate([0, 3, 9, 12])]
    # band = 0 + (12 - 0) / 4 = 3
    assert names(least_by(endpoints, lambda e: e.metrics.waiting_queue_size)) == {"e-0", "e-1"}


def test_critical_prefers_low_queue_then_least_queue_then_least_kv() -> None:
    f = LegacyV03Filter()
    endpoints = [
        ep("e-0", queue=200, kv=0.0),  # over 128: out
        ep("e-1", queue=2, kv=0.7),
        ep("e-2", queue=2, kv=0.1),
        ep("e-3", queue=60, kv=0.0),
    ]
    assert names(f.filter(req(priority=CRITICAL, lora_adapter=False), endpoints)) == {"e-2"}


def test_critical_all_queues_high_still_served() -> None:
    f = LegacyV03Filter()
    endpoints = [ep("e-0", queue=300, kv=0.9), ep("e-1", queue=200, kv=0.95)]
    assert names(f.filter(req(priority=CRITICAL, lora_adapter=False), endpoints)) == {"e-1"}


def test_critical_lora_soft_affinity() -> None:
    has = ep("e-0", queue=3, active_adapters=frozenset({"ad"}), max_active_adapters=1)
    room = ep("e-1", queue=0, max_active_adapters=1)
    f = LegacyV03Filter(rng=random.Random(1))
    picks = [names(f.filter(req(model="ad", priority=CRITICAL), [has, room])) for _ in range(2000)]
    assert picks.count({"e-0"}) >= 1980  # 0.999 affinity, despite its longer queue
    rare = LegacyV03Filter(rng=random.Random(1))
    rare.params = rare.params.model_copy(update={"lora_affinity_threshold": 0.0})
    assert names(rare.filter(req(model="ad", priority=CRITICAL), [has, room])) == {"e-1"}


def test_soft_affinity_falls_back_when_neither_kind_exists() -> None:
    full = ep("e-0", active_adapters=frozenset({"other"}), max_active_adapters=1)
    assert lora_soft_affinity(req(model="ad"), [full], 0.999, random.Random(0)) == []
    # the tree then passes the low-queue set on unchanged
    assert names(LegacyV03Filter().filter(req(model="ad", priority=CRITICAL), [full])) == {"e-0"}


def test_standard_and_sheddable_need_headroom() -> None:
    f = LegacyV03Filter()
    busy = ep("e-0", queue=6, kv=0.1)
    full = ep("e-1", queue=0, kv=0.85)
    fine = ep("e-2", queue=5, kv=0.8)  # both limits inclusive
    for priority in (STANDARD, SHEDDABLE):
        assert names(f.filter(req(priority=priority, lora_adapter=False), [busy, full, fine])) == {"e-2"}


def test_non_critical_is_shed_when_no_headroom_and_critical_is_not() -> None:
    s = load_scheduler("legacy-v0.3")
    endpoints = [ep("e-0", queue=6), ep("e-1", kv=0.81)]
    shed = s.schedule(req(priority=SHEDDABLE), endpoints)
    assert shed.shed and shed.ranked == []
    assert all(
        reason.startswith("legacy-v0.3-filter: no endpoint has queue <= 5")
        for reason in shed.filtered_out.values()
    )
    assert s.schedule(req(priority=STANDARD), endpoints).shed
    critical = s.schedule(req(priority=CRITICAL), endpoints)
    assert not critical.shed and len(critical.ranked) == 1


def test_non_critical_prefers_endpoints_that_can_take_the_adapter() -> None:
    f = LegacyV03Filter()
    full = ep("e-0", active_adapters=frozenset({"x"}), max_active_adapters=1)
    has = ep("e-1", active_adapters=frozenset({"ad"}), max_active_adapters=1)
    assert names(f.filter(req(model="ad"), [full, has])) == {"e-1"}
