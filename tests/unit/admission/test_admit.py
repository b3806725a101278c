from __future__ import annotations

import pytest

from inferpool.admission import Admission, AdmissionConfig, ShedError
from inferpool.state import Endpoint, EndpointMetrics

NOW = 50.0


def _ep(name: str, queue: int = 0, kv: float = 0.0, fresh: bool = True) -> Endpoint:
    metrics = EndpointMetrics(
        waiting_queue_size=queue, kv_cache_usage=kv, scraped_at=NOW - 0.05 if fresh else 0.0
    )
    return Endpoint(name, "10.0.0.1", 8000, "default/p", metrics=metrics)


def _admission(**kw: object) -> Admission:
    return Admission(AdmissionConfig(**kw), clock=lambda: NOW)  # type: ignore[arg-type]


IDLE = [_ep("a"), _ep("b")]
SATURATED = [_ep("a", queue=5), _ep("b", kv=0.85)]  # ratios 1.0 and 1.0625: mean ~1.03
MIXED = [_ep("a", queue=10), _ep("b", queue=1)]  # 2.0 and 0.2: mean 1.1, one endpoint with room
OVERLOADED = [_ep("a", queue=10), _ep("b", queue=8)]  # 2.0 and 1.6: mean 1.8, all saturated
STALE = [_ep("a", fresh=False), _ep("b", fresh=False)]


@pytest.mark.parametrize("priority", [-1, 0, 1])
def test_idle_pool_admits_everyone(priority: int) -> None:
    assert _admission().admit("default/p", IDLE, priority).admitted


@pytest.mark.parametrize("pool", [SATURATED, MIXED, OVERLOADED, STALE])
def test_sheddable_is_429_when_saturated(pool: list[Endpoint]) -> None:
    admission = _admission()
    with pytest.raises(ShedError) as info:
        admission.admit("default/p", pool, -1)
    err = info.value
    assert (err.status, err.reason) == (429, "saturated-sheddable")
    assert err.body()["error"]["type"] == "RateLimitError"
    assert err.headers == {"retry-after": "1"}
    assert "default/p" in err.message
    assert admission.shed_counts["saturated-sheddable"] == 1


def test_any_negative_priority_is_sheddable() -> None:
    with pytest.raises(ShedError):
        _admission().admit("default/p", SATURATED, -100)


@pytest.mark.parametrize("pool", [SATURATED, MIXED, OVERLOADED, STALE])
@pytest.mark.parametrize("priority", [1, 1000])
def test_critical_never_shed(pool: list[Endpoint], priority: int) -> None:
    assert _admission().admit("default/p", pool, priority).admitted


@pytest.mark.parametrize("pool", [SATURATED, MIXED, STALE])
def test_standard_admitted_below_ceiling_or_with_room(pool: list[Endpoint]) -> None:
    assert _admission().admit("default/p", pool, 0).admitted


def test_standard_shed_when_all_saturated_past_ceiling() -> None:
    admission = _admission()
    with pytest.raises(ShedError) as info:
        admission.admit("default/p", OVERLOADED, 0)
    assert (info.value.status, info.value.reason) == (429, "saturated-standard")
    assert info.value.snapshot is not None and info.value.snapshot.ratio == pytest.approx(1.8)
    assert admission.shed_counts == {
        "no-ready-endpoints": 0,
        "saturated-sheddable": 0,
        "saturated-standard": 1,
        "scheduler-shed": 0,
    }


def test_standard_with_one_endpoint_of_room_is_admitted_even_past_ceiling() -> None:
    pool = [_ep("a", queue=50), _ep("b", queue=50), _ep("c", queue=50), _ep("d", queue=0)]  # mean 1.5
    assert _admission().admit("default/p", pool, 0).admitted


def test_standard_ceiling_configurable() -> None:
    with pytest.raises(ShedError):
        _admission(standard_ceiling=1.0).admit("default/p", SATURATED, 0)


def test_no_ready_endpoints_is_503_for_all() -> None:
    admission = _admission()
    for priority in (-1, 0, 1):
        with pytest.raises(ShedError) as info:
            admission.admit("default/p", [], priority)
        assert info.value.status == 503
        assert info.value.message == "no ready endpoints in pool default/p"
        assert info.value.err_type == "ServiceUnavailableError"
        assert "retry-after" not in info.value.headers
    assert admission.shed_counts["no-ready-endpoints"] == 3


def test_disabled_admission_sheds_nothing_but_still_503s() -> None:
    admission = _admission(enabled=False)
    assert admission.admit("default/p", OVERLOADED, -1).admitted
    with pytest.raises(ShedError):
        admission.admit("default/p", [], -1)


def test_scheduler_shed_error_is_counted_429() -> None:
    admission = _admission()
    err = admission.scheduler_shed("default/p", "legacy-v0.3")
    assert (err.status, err.reason) == (429, "scheduler-shed")
    assert admission.shed_counts["scheduler-shed"] == 1


def test_decide_counts_nothing() -> None:
    admission = _admission()
    decision = admission.decide(OVERLOADED, -1)
    assert not decision.admitted and decision.reason == "saturated-sheddable"
    assert sum(admission.shed_counts.values()) == 0
