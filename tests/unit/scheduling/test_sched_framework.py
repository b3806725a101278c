"""The Scheduler: filters (hard, soft, shedding), weighted scores, subset, hooks, result shape."""

from __future__ import annotations

from dataclasses import dataclass, field

from inferpool.scheduling import Profile, Scheduler, SchedulingRequest, ShedRequest, WeightedScorer
from inferpool.scheduling.plugins.kv_cache import KVCacheUtilizationScorer
from inferpool.scheduling.plugins.max_score import MaxScorePicker
from inferpool.scheduling.plugins.queue import QueueScorer
from inferpool.state import Endpoint

from .conftest import ep, req


@dataclass
class DropNamed:
    drop: set[str]
    soft: bool = False
    name: str = "drop-named"

    def filter(self, r: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        return [e for e in endpoints if e.name not in self.drop]


@dataclass
class AlwaysShed:
    name: str = "always-shed"
    soft: bool = False

    def filter(self, r: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        raise ShedRequest("pool saturated")


@dataclass
class Recorder:
    name: str = "recorder"
    events: list[tuple[str, str]] = field(default_factory=list)

    def score(self, r: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]:
        return {e: 2.5 for e in endpoints}  # out of range on purpose: the scheduler clamps

    def on_routed(self, r: SchedulingRequest, endpoint: Endpoint) -> None:
        self.events.append(("routed", endpoint.name))

    def on_completed(self, r: SchedulingRequest, endpoint: Endpoint) -> None:
        self.events.append(("completed", endpoint.name))

    def on_endpoint_removed(self, name: str) -> None:
        self.events.append(("removed", name))


def scheduler(*filters: object, scorers: list[WeightedScorer] | None = None) -> Scheduler:
    default = [WeightedScorer(QueueScorer(), 2), WeightedScorer(KVCacheUtilizationScorer(), 1)]
    return Scheduler(Profile("t", list(filters), default if scorers is None else scorers, MaxScorePicker()))  # type: ignore[arg-type]


def test_weighted_total_and_raw_scores() -> None:
    a, b = ep("e-0", queue=0, kv=0.5), ep("e-1", queue=4, kv=0.0)
    result = scheduler().schedule(req(), [a, b])
    assert [s.endpoint for s in result.ranked] == [a, b]
    top, second = result.ranked
    assert top.scores == {"queue-scorer": 1.0, "kv-cache-utilization-scorer": 0.5}
    assert top.total == 2 * 1.0 + 1 * 0.5
    assert second.total == 2 * 0.0 + 1 * 1.0
    assert result.profile == "t" and result.shed is False and result.duration_s > 0
    assert result.endpoints == [a, b]


def test_hard_filter_records_reason_and_can_empty_the_set() -> None:
    a, b = ep("e-0"), ep("e-1")
    result = scheduler(DropNamed({"e-0"})).schedule(req(), [a, b])
    assert result.endpoints == [b] and result.filtered_out == {"e-0": "drop-named"}
    empty = scheduler(DropNamed({"e-0", "e-1"})).schedule(req(), [a, b])
    assert empty.ranked == [] and empty.shed is False
    assert empty.filtered_out == {"e-0": "drop-named", "e-1": "drop-named"}


def test_soft_filter_that_removes_everyone_is_ignored() -> None:
    a, b = ep("e-0"), ep("e-1")
    result = scheduler(DropNamed({"e-0", "e-1"}, soft=True)).schedule(req(), [a, b])
    assert {e.name for e in result.endpoints} == {"e-0", "e-1"} and result.filtered_out == {}
    partial = scheduler(DropNamed({"e-0"}, soft=True)).schedule(req(), [a, b])
    assert partial.endpoints == [b]


def test_shed_filter_gives_empty_shed_result_with_reasons() -> None:
    a, b = ep("e-0"), ep("e-1")
    result = scheduler(DropNamed({"e-0"}), AlwaysShed()).schedule(req(), [a, b])
    assert result.shed is True and result.ranked == []
    assert result.filtered_out == {"e-0": "drop-named", "e-1": "always-shed: pool saturated"}


def test_subset_restricts_candidates() -> None:
    a, b, c = ep("e-0"), ep("e-1"), ep("e-2")
    result = scheduler().schedule(req(subset=frozenset({"10.0.0.2:8000", "10.0.0.3:8000"})), [a, b, c])
    assert {e.name for e in result.endpoints} == {"e-1", "e-2"}
    assert result.filtered_out == {"e-0": "subset"}
    none = scheduler().schedule(req(subset=frozenset({"10.9.9.9:1"})), [a, b, c])
    assert none.ranked == [] and len(none.filtered_out) == 3


def test_subset_matches_ipv6_with_and_without_brackets() -> None:
    v6 = Endpoint(name="v6", address="fd00::1", port=8000, pool="default/p")
    assert scheduler().schedule(req(subset=frozenset({"[fd00::1]:8000"})), [v6]).endpoints == [v6]
    assert scheduler().schedule(req(subset=frozenset({"fd00::1:8000"})), [v6]).endpoints == [v6]


def test_no_candidates() -> None:
    result = scheduler().schedule(req(), [])
    assert result.ranked == [] and not result.shed


def test_scores_are_clamped_and_hooks_reach_plugins() -> None:
    recorder = Recorder()
    s = scheduler(scorers=[WeightedScorer(recorder, 1)])
    a = ep("e-0")
    result = s.schedule(req(), [a])
    assert result.ranked[0].scores == {"recorder": 1.0} and result.ranked[0].total == 1.0
    r = req()
    s.on_routed(r, a)
    s.on_completed(r, a)
    s.on_endpoint_removed("e-0")
    assert recorder.events == [("routed", "e-0"), ("completed", "e-0"), ("removed", "e-0")]


def test_plugin_in_two_roles_gets_each_hook_once() -> None:
    recorder = Recorder()
    s = scheduler(scorers=[WeightedScorer(recorder, 1), WeightedScorer(recorder, 2)])
    s.on_routed(req(), ep("e-0"))
    assert recorder.events == [("routed", "e-0")]
