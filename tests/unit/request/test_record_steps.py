"""When each step of a request began, as its record says (the timeline traces are drawn from)."""

from __future__ import annotations

import random

import orjson
import pytest

from inferpool.admission import Admission, AdmissionConfig
from inferpool.errors import InferenceError
from inferpool.records import RequestRecord
from inferpool.request import Director
from inferpool.state import Criticality, Datastore, Endpoint, ModelRoute, Pool

from .fakes import FakeScheduler

POOL = "default/pool"
BODY = orjson.dumps({"model": "base", "prompt": "hello"})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def director(*endpoints: Endpoint) -> tuple[Director, Clock, list[RequestRecord]]:
    store = Datastore()
    store.upsert_pool(Pool("default", "pool", {"app": "vllm"}, [8000]))
    store.upsert_model(ModelRoute("default", "base", "base", "pool", Criticality.CRITICAL))
    for endpoint in endpoints:
        store.upsert_endpoint(endpoint)
    clock = Clock()
    d = Director(
        store, lambda pool: FakeScheduler(), Admission(AdmissionConfig()), rng=random.Random(1), clock=clock
    )
    records: list[RequestRecord] = []
    d.subscribe(records.append)
    return d, clock, records


def test_a_routed_request_records_routing_admission_dispatch_and_response_offsets() -> None:
    d, clock, records = director(Endpoint("a", "10.0.0.1", 8000, POOL), Endpoint("b", "10.0.0.2", 8000, POOL))
    clock.now = 10.0
    routed = d.route(POOL, "/v1/completions", {}, BODY, arrived=9.0)
    first, second = routed.candidates
    clock.now = 10.5
    routed.dispatched(first)
    clock.now = 11.0
    routed.dispatched(second)  # a retry: the first dispatch is when the request left
    clock.now = 12.0
    routed.response_started(200, "application/json")
    clock.now = 13.0
    record = routed.finish(200)
    assert records == [record]
    assert (record.routing_started_s, record.admitted_s) == (1.0, 1.0)
    assert (record.dispatched_s, record.response_started_s, record.e2e_s) == (1.5, 3.0, 4.0)


def test_a_request_refused_by_admission_began_routing_but_was_never_admitted() -> None:
    d, clock, records = director()  # no endpoints: admission answers 503
    clock.now = 5.0
    with pytest.raises(InferenceError):
        d.route(POOL, "/v1/completions", {}, BODY, arrived=4.5)
    [record] = records
    assert record.status == 503
    assert (record.routing_started_s, record.admitted_s, record.dispatched_s) == (0.5, None, None)


def test_a_service_backend_records_dispatch_and_response_but_no_routing() -> None:
    d, clock, _ = director()
    clock.now = 1.0
    request = d.passthrough("r", [Endpoint("svc", "10.0.0.9", 80, "default/svc")], b"{}", arrived=1.0)
    clock.now = 1.25
    request.dispatched(request.candidates[0])
    clock.now = 2.0
    request.response_started(200, None)
    clock.now = 3.0
    record = request.finish(200)
    assert (record.routing_started_s, record.admitted_s) == (None, None)
    assert (record.dispatched_s, record.response_started_s) == (0.25, 1.0)


def test_a_request_refused_by_the_data_plane_has_no_steps() -> None:
    d, _, _ = director()
    record = d.refuse("r", InferenceError(401, "bad key"), arrived=0.0)
    assert (record.routing_started_s, record.dispatched_s, record.response_started_s) == (None, None, None)
