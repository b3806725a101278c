"""The inlined snapshot loop answers exactly what the max()-based one did (bit for bit).

Time budget: about 2 s on a busy 2-core machine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.admission.saturation import SaturationConfig, SaturationDetector, SaturationSnapshot
from inferpool.state import Endpoint, EndpointMetrics

NOW = 1000.0


def reference_snapshot(
    cfg: SaturationConfig,
    endpoints: Sequence[Endpoint],
    now: float,
    waiting: Callable[[Endpoint], int] | None,
) -> SaturationSnapshot:
    """The snapshot as computed before (commit f902594)."""
    oldest = now - cfg.stale_after_s
    queue_t, kv_t, cap = cfg.queue_threshold, cfg.kv_threshold, cfg.ratio_cap
    total = 0.0
    saturated = stale = 0
    for endpoint in endpoints:
        m = endpoint.metrics
        if m.scraped_at == 0.0 or m.scraped_at < oldest:
            stale += 1
            saturated += 1
            total += cfg.stale_ratio
            continue
        queued = m.waiting_queue_size if waiting is None else waiting(endpoint)
        ratio = max(queued / queue_t, m.kv_cache_usage / kv_t)
        if ratio >= 1.0:
            saturated += 1
        total += ratio if ratio < cap else cap
    count = len(endpoints)
    return SaturationSnapshot(
        ratio=total / count if count else 0.0, endpoints=count, saturated=saturated, stale=stale
    )


kv_values = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.8, 1.6, -0.1, float("nan"), float("inf")]))
ages = st.one_of(st.none(), st.floats(0.0, 1.9), st.floats(2.0, 10.0))
endpoint_specs = st.tuples(st.integers(0, 40), kv_values, ages, st.integers(0, 12))


@settings(max_examples=200, deadline=None)
@given(specs=st.lists(endpoint_specs, max_size=30), use_waiting=st.booleans())
def test_snapshot_matches_the_max_based_loop(
    specs: list[tuple[int, float, float | None, int]], use_waiting: bool
) -> None:
    endpoints = [
        Endpoint(
            f"e-{i}",
            "10.0.0.1",
            8000 + i,
            "default/p",
            metrics=EndpointMetrics(
                waiting_queue_size=queue, kv_cache_usage=kv, scraped_at=0.0 if age is None else NOW - age
            ),
        )
        for i, (queue, kv, age, _) in enumerate(specs)
    ]
    own_queue = {e: spec[3] for e, spec in zip(endpoints, specs, strict=True)}
    waiting = own_queue.__getitem__ if use_waiting else None
    cfg = SaturationConfig()
    got = SaturationDetector(cfg, clock=lambda: NOW).snapshot(endpoints, waiting=waiting)
    # repr compares the ratio bit for bit, NaN included
    assert repr(got) == repr(reference_snapshot(cfg, endpoints, NOW, waiting))
