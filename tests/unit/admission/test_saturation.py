from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferpool.admission import SaturationDetector
from inferpool.admission.saturation import SaturationConfig
from inferpool.state import Endpoint, EndpointMetrics

NOW = 1000.0


def _ep(name: str = "a", queue: int = 0, kv: float = 0.0, age: float | None = 0.1) -> Endpoint:
    scraped = 0.0 if age is None else NOW - age
    return Endpoint(
        name,
        "10.0.0.1",
        8000,
        "default/p",
        metrics=EndpointMetrics(waiting_queue_size=queue, kv_cache_usage=kv, scraped_at=scraped),
    )


def _detector(**kw: float) -> SaturationDetector:
    return SaturationDetector(SaturationConfig(**kw), clock=lambda: NOW)


@pytest.mark.parametrize(
    ("queue", "kv", "ratio", "saturated"),
    [
        (0, 0.0, 0.0, False),
        (4, 0.0, 0.8, False),
        (5, 0.0, 1.0, True),  # >= 1 is saturated
        (0, 0.79, 0.79 / 0.8, False),
        (0, 0.8, 1.0, True),
        (2, 0.6, 0.75, False),  # max of the two, not the sum
        (10, 0.4, 2.0, True),
    ],
)
def test_endpoint_ratio(queue: int, kv: float, ratio: float, saturated: bool) -> None:
    det = _detector()
    ep = _ep(queue=queue, kv=kv)
    assert det.load_ratio(ep) == pytest.approx(ratio)
    assert det.endpoint_saturated(ep) is saturated


def test_thresholds_are_configurable() -> None:
    det = _detector(queue_threshold=10, kv_threshold=0.9)
    assert not det.endpoint_saturated(_ep(queue=9, kv=0.89))
    assert det.endpoint_saturated(_ep(queue=10))


def test_stale_and_never_scraped_are_saturated() -> None:
    det = _detector()
    assert not det.endpoint_saturated(_ep(age=2.0))  # exactly at the threshold is still fresh
    assert det.endpoint_saturated(_ep(age=2.01))
    assert det.endpoint_saturated(_ep(age=None))  # never scraped
    assert _detector(stale_after_s=10).endpoint_saturated(_ep(age=5)) is False


def test_pool_ratio_is_the_mean() -> None:
    det = _detector()
    snap = det.snapshot([_ep("a", queue=5), _ep("b", queue=0), _ep("c", kv=0.4)])
    assert snap.ratio == pytest.approx((1.0 + 0.0 + 0.5) / 3)
    assert (snap.endpoints, snap.saturated, snap.stale) == (3, 1, 0)
    assert not snap.pool_saturated and not snap.all_saturated


def test_pool_saturated_at_mean_one() -> None:
    det = _detector()
    assert det.pool_saturated([_ep("a", queue=5), _ep("b", kv=0.8)])
    assert det.pool_saturated([_ep("a", queue=7), _ep("b", queue=3)])  # 1.4 and 0.6
    assert not det.pool_saturated([_ep("a", queue=7), _ep("b", queue=2)])


def test_one_overloaded_endpoint_is_capped() -> None:
    det = _detector()
    snap = det.snapshot([_ep("a", queue=500), _ep("b"), _ep("c")])
    assert snap.ratio == pytest.approx(2.0 / 3)  # capped at 2, not 100/3
    assert not snap.pool_saturated


def test_stale_endpoint_counts_as_exactly_full() -> None:
    det = _detector()
    snap = det.snapshot([_ep("a", age=None), _ep("b", queue=5, age=30)])
    assert snap.ratio == pytest.approx(1.0)  # queue of the stale one is ignored
    assert (snap.saturated, snap.stale) == (2, 2)
    assert snap.pool_saturated and snap.all_saturated


def test_empty_pool() -> None:
    snap = _detector().snapshot([])
    assert snap.ratio == 0.0 and not snap.pool_saturated and not snap.all_saturated


@given(
    st.lists(
        st.tuples(st.integers(0, 1000), st.floats(0, 1), st.one_of(st.none(), st.floats(0, 10))),
        min_size=1,
        max_size=30,
    )
)
def test_pool_ratio_bounds(points: list[tuple[int, float, float | None]]) -> None:
    """The pool ratio stays in [0, cap], and saturated counts never exceed the endpoint count."""
    det = _detector()
    eps = [_ep(str(i), q, kv, age) for i, (q, kv, age) in enumerate(points)]
    snap = det.snapshot(eps)
    assert 0.0 <= snap.ratio <= det.config.ratio_cap + 1e-9
    assert not math.isnan(snap.ratio)
    assert snap.stale <= snap.saturated <= snap.endpoints == len(eps)
    if snap.all_saturated:
        assert snap.ratio >= 1.0 - 1e-9  # every member contributes at least 1
        assert snap.pool_saturated
