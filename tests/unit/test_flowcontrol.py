"""Flow control: queue order, limits, TTL, cancellation, dispatch gating, Director and config wiring."""

from __future__ import annotations

import asyncio
import io
import itertools
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferpool.admission import Admission, AdmissionConfig, SaturationConfig, SaturationDetector
from inferpool.admission.flowcontrol import (
    DISPATCHED,
    EDF,
    EVICTED_CANCELLED,
    EVICTED_OTHER,
    EVICTED_TTL,
    GLOBAL_STRICT,
    REJECTED_CAPACITY,
    BandConfig,
    DispatchGate,
    FlowControlConfig,
    FlowControlError,
    FlowController,
    FlowOutcome,
    Grant,
    PoolQueue,
    QueuedRequest,
    flow_id,
    parse_quantity,
)
from inferpool.durations import parse_go_duration_or_seconds as parse_duration
from inferpool.errors import InferenceError
from inferpool.extproc.app import EppApp, EppConfig
from inferpool.gateway.runtime import GatewayRuntime, RuntimeConfig
from inferpool.observe.accesslog import AccessLog
from inferpool.observe.decisions import decision_view
from inferpool.observe.metrics import GatewayMetrics
from inferpool.observe.observation import Observation
from inferpool.request import Director, RequestRecord
from inferpool.scheduling import ConfigError, load_scheduler, parse_config
from inferpool.scheduling.config import load_flow_control
from inferpool.state import Criticality, Datastore, Endpoint, EndpointMetrics, ModelRoute, Pool

POOL = "default/pool"
_seq = itertools.count()


def item(priority: int = 0, flow: str = "", size: int = 10, deadline: float | None = None) -> QueuedRequest:
    seq = next(_seq)
    return QueuedRequest(POOL, priority, flow, size, float(seq), deadline, seq)


def drain(queue: PoolQueue) -> list[QueuedRequest]:
    out = []
    while (next_item := queue.pop()) is not None:
        out.append(next_item)
    return out


# -- queue order ---------------------------------------------------------------------------


def test_strict_priority_between_bands() -> None:
    queue = PoolQueue(FlowControlConfig())
    items = [item(p) for p in (-1, 0, 1, 0, -1, 1, 5)]
    for i in items:
        assert queue.admit(i)
    assert [i.priority for i in drain(queue)] == [5, 1, 1, 0, 0, -1, -1]


def test_round_robin_between_flows_of_a_band() -> None:
    queue = PoolQueue(FlowControlConfig())
    for flow in ["a", "a", "a", "a", "b", "b", "c"]:
        assert queue.admit(item(0, flow))
    assert [i.flow_id for i in drain(queue)] == ["a", "b", "c", "a", "b", "a", "a"]


def test_a_flow_that_comes_back_waits_for_its_turn() -> None:
    queue = PoolQueue(FlowControlConfig())
    for flow in ["a", "a", "b"]:
        queue.admit(item(0, flow))
    assert queue.pop().flow_id == "a"  # type: ignore[union-attr]
    queue.admit(item(0, "c"))
    assert [i.flow_id for i in drain(queue)] == ["b", "a", "c"]


def test_global_strict_fairness_is_arrival_order_across_flows() -> None:
    queue = PoolQueue(FlowControlConfig(default_band=BandConfig(fairness=GLOBAL_STRICT)))
    flows = ["a", "a", "a", "b", "c", "b"]
    admitted = [item(0, f) for f in flows]
    for i in admitted:
        queue.admit(i)
    assert drain(queue) == admitted


def test_fcfs_vs_edf_order_inside_a_flow() -> None:
    deadlines = [30.0, 10.0, None, 20.0]
    fcfs, edf = (
        PoolQueue(FlowControlConfig()),
        PoolQueue(FlowControlConfig(bands={0: BandConfig(ordering=EDF)})),
    )
    fcfs_items = [item(0, "t", deadline=d) for d in deadlines]
    edf_items = [item(0, "t", deadline=d) for d in deadlines]
    for a, b in zip(fcfs_items, edf_items, strict=True):
        fcfs.admit(a)
        edf.admit(b)
    assert [i.deadline for i in drain(fcfs)] == deadlines
    assert [i.deadline for i in drain(edf)] == [10.0, 20.0, 30.0, None]  # no deadline goes last


def test_edf_ties_break_by_arrival() -> None:
    queue = PoolQueue(FlowControlConfig(default_band=BandConfig(ordering=EDF)))
    first, second = item(0, deadline=5.0), item(0, deadline=5.0)
    queue.admit(second)  # a later seq admitted first must still come out second
    queue.admit(first)
    assert drain(queue) == [first, second]


# -- limits ----------------------------------------------------------------------------------


def test_band_count_limit() -> None:
    queue = PoolQueue(FlowControlConfig(bands={0: BandConfig(max_requests=2)}))
    assert queue.admit(item(0)) and queue.admit(item(0))
    assert not queue.admit(item(0))
    assert queue.admit(item(1))  # other bands are not affected
    assert (len(queue), queue.bands[0].requests) == (3, 2)


def test_band_byte_limit() -> None:
    queue = PoolQueue(FlowControlConfig(bands={0: BandConfig(max_bytes=100)}))
    assert queue.admit(item(0, size=60))
    assert not queue.admit(item(0, size=50))
    assert queue.admit(item(0, size=40))
    assert queue.bands[0].bytes == 100


def test_pool_limits_span_all_bands() -> None:
    by_count = PoolQueue(FlowControlConfig(max_requests=2))
    assert by_count.admit(item(1)) and by_count.admit(item(-1))
    assert not by_count.admit(item(0))
    by_bytes = PoolQueue(FlowControlConfig(max_bytes=100))
    assert by_bytes.admit(item(1, size=70))
    assert not by_bytes.admit(item(0, size=40))


def test_max_requests_zero_means_nothing_of_that_band_waits() -> None:
    queue = PoolQueue(FlowControlConfig(bands={-1: BandConfig(max_requests=0)}))
    assert not queue.admit(item(-1))
    assert queue.admit(item(0))


def test_removal_frees_room_at_once() -> None:
    queue = PoolQueue(FlowControlConfig(bands={0: BandConfig(max_requests=1, max_bytes=100)}))
    waiting = item(0, "a", size=100)
    assert queue.admit(waiting)
    assert not queue.admit(item(0, "b", size=1))
    assert queue.remove(waiting) and not queue.remove(waiting)
    assert (len(queue), queue.bytes, queue.bands[0].bytes) == (0, 0, 0)
    assert queue.admit(item(0, "b", size=100))
    assert not queue.bands[0].flows.get("a")  # an emptied flow is forgotten


# -- controller (with a gate the test drives) -------------------------------------------------


@dataclass
class SlotGate:
    """Room for `slots` requests in transit; records what the controller reports."""

    slots: int = 0
    sent_to: list[str] = field(default_factory=list)
    finished_on: list[str] = field(default_factory=list)

    def has_capacity(self, pool: str, in_transit: int) -> bool:
        return in_transit < self.slots

    def sent(self, endpoint: Endpoint) -> None:
        self.sent_to.append(endpoint.name)

    def finished(self, endpoint: Endpoint) -> None:
        self.finished_on.append(endpoint.name)


def controller(gate: SlotGate, **config: object) -> tuple[FlowController, list[FlowOutcome]]:
    flow = FlowController(FlowControlConfig(**config), gate)  # type: ignore[arg-type]
    outcomes: list[FlowOutcome] = []
    flow.subscribe(outcomes.append)
    return flow, outcomes


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_room_and_no_one_ahead_goes_at_once() -> None:
    flow, outcomes = controller(SlotGate(slots=1))
    grant = await flow.acquire(POOL, 0, "", 10)
    assert grant.wait_s == 0.0 and flow.in_transit(POOL) == 1
    grant.done()
    grant.done()  # idempotent
    assert flow.in_transit(POOL) == 0
    assert outcomes == [FlowOutcome(POOL, 0, DISPATCHED, 0.0)]


async def test_waits_until_room_then_strict_priority_first() -> None:
    gate = SlotGate(slots=0)
    flow, _ = controller(gate)
    order: list[int] = []

    async def request(priority: int) -> None:
        grant = await flow.acquire(POOL, priority, "", 10)
        order.append(priority)
        grant.done()

    tasks = [asyncio.create_task(request(p)) for p in (-1, 0, 1, -1, 1)]
    await settle()
    assert flow.waiting(POOL) == 5 and not order
    gate.slots = 1
    flow.finished(POOL, None)  # a completion re-checks the pool
    await asyncio.gather(*tasks)
    assert order == [1, 1, 0, -1, -1]


async def test_a_new_request_does_not_overtake_its_band() -> None:
    gate = SlotGate(slots=0)
    flow, _ = controller(gate)
    waiting = asyncio.create_task(flow.acquire(POOL, 0, "", 10))
    await settle()
    gate.slots = 5  # room appeared, but nothing has re-checked the pool yet
    second = asyncio.create_task(flow.acquire(POOL, 0, "", 10))
    await settle()
    assert waiting.done() and second.done()
    assert flow.stats()[0].requests == 0


async def test_ttl_expiry_is_503_and_frees_bytes() -> None:
    flow, outcomes = controller(SlotGate(slots=0), default_request_ttl_s=0.05)
    with pytest.raises(FlowControlError) as info:
        await flow.acquire(POOL, 0, "t", 123)
    assert (info.value.status, info.value.outcome, info.value.reason) == (
        503,
        EVICTED_TTL,
        "queue-ttl-expired",
    )
    assert "timed out in queue" in info.value.message
    assert flow.waiting(POOL) == 0 and flow.stats()[0].bytes == 0
    assert outcomes[-1].outcome == EVICTED_TTL and outcomes[-1].wait_s >= 0.05


async def test_the_shorter_of_request_and_default_ttl_applies() -> None:
    flow, _ = controller(SlotGate(slots=0), default_request_ttl_s=60.0)
    started = time.monotonic()
    with pytest.raises(FlowControlError):
        await flow.acquire(POOL, 0, "", 1, ttl_s=0.05)
    assert time.monotonic() - started < 30  # the request's own 0.05 s, not the default minute


async def test_full_queue_is_429_with_retry_after() -> None:
    flow, outcomes = controller(SlotGate(slots=0), bands={0: BandConfig(max_requests=1)})
    first = asyncio.create_task(flow.acquire(POOL, 0, "", 10))
    await settle()
    with pytest.raises(FlowControlError) as info:
        await flow.acquire(POOL, 0, "", 10)
    assert (info.value.status, info.value.outcome, info.value.reason) == (
        429,
        REJECTED_CAPACITY,
        "queue-full",
    )
    assert info.value.headers == {"retry-after": "1"}
    assert outcomes[-1] == FlowOutcome(POOL, 0, REJECTED_CAPACITY, 0.0)
    first.cancel()


async def test_cancelled_waiter_leaves_and_frees_capacity() -> None:
    gate = SlotGate(slots=0)
    flow, outcomes = controller(gate, bands={0: BandConfig(max_requests=1, max_bytes=100)})
    waiter = asyncio.create_task(flow.acquire(POOL, 0, "a", 100))
    await settle()
    assert flow.stats()[0].bytes == 100
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert flow.waiting(POOL) == 0 and flow.stats()[0].bytes == 0
    assert outcomes[-1].outcome == EVICTED_CANCELLED
    replacement = asyncio.create_task(flow.acquire(POOL, 0, "b", 100))  # fits again
    await settle()
    assert flow.waiting(POOL) == 1
    gate.slots = 1
    flow.pump()
    assert isinstance(await replacement, Grant)


async def test_released_then_cancelled_gives_its_transit_slot_back() -> None:
    gate = SlotGate(slots=0)
    flow, _ = controller(gate)
    waiter = asyncio.create_task(flow.acquire(POOL, 0, "", 1))
    await settle()
    gate.slots = 1
    flow.pump()  # released: the future is resolved, the task has not run yet
    assert flow.in_transit(POOL) == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert flow.in_transit(POOL) == 0


async def test_close_evicts_waiters_with_503() -> None:
    flow, outcomes = controller(SlotGate(slots=0))
    waiter = asyncio.create_task(flow.acquire(POOL, 1, "", 1))
    await settle()
    flow.close()
    with pytest.raises(FlowControlError) as info:
        await waiter
    assert (info.value.status, info.value.outcome) == (503, EVICTED_OTHER)
    assert outcomes[-1].outcome == EVICTED_OTHER


def test_flow_identity() -> None:
    assert flow_id("tenant-a", {"authorization": "Bearer sk-1"}) == "tenant-a"
    keyed = flow_id(None, {"authorization": "Bearer sk-secret"})
    assert keyed.startswith("key:") and "sk-secret" not in keyed
    assert (
        keyed
        == flow_id("", {"authorization": "bearer sk-secret"})
        != flow_id(None, {"authorization": "Bearer x"})
    )
    assert flow_id(None, {}) == flow_id(None, {"authorization": "Basic abc"}) == ""


# -- the dispatch gate on scraped metrics -----------------------------------------------------


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def gated_pool(waiting: int, clock: Clock) -> tuple[Datastore, Endpoint, DispatchGate]:
    store = Datastore()
    store.upsert_pool(Pool("default", "pool", {"app": "sim"}, [8000]))
    endpoint = store.upsert_endpoint(
        Endpoint(
            "sim-0",
            "10.0.0.1",
            8000,
            POOL,
            metrics=EndpointMetrics(waiting_queue_size=waiting, scraped_at=clock.now),
        )
    )
    detector = SaturationDetector(SaturationConfig(queue_threshold=5), clock)
    return store, endpoint, DispatchGate(store, detector, scrape_lag_s=0.0, clock=clock)


def scrape(endpoint: Endpoint, clock: Clock, waiting: int) -> None:
    clock.now += 0.05
    endpoint.metrics = EndpointMetrics(waiting_queue_size=waiting, scraped_at=clock.now)


async def test_no_burst_beyond_capacity_on_stale_metrics() -> None:
    clock = Clock()
    store, endpoint, gate = gated_pool(0, clock)
    flow = FlowController(FlowControlConfig(recheck_interval_s=3600), gate, datastore=store, clock=clock)
    sent: list[int] = []

    async def request(i: int) -> None:
        grant = await flow.acquire(POOL, 0, "", 10)
        flow.sent(endpoint)  # what RoutedRequest.dispatched does
        grant.done()
        sent.append(i)

    tasks = [asyncio.create_task(request(i)) for i in range(20)]
    await settle()
    # The last scrape said "empty"; 5 waiting requests make an endpoint full: only 5 go out.
    assert len(sent) == 5 and flow.waiting(POOL) == 15
    flow.pump()  # re-checking on the same (now outdated) metrics changes nothing
    await settle()
    assert len(sent) == 5
    flow.finished(POOL, endpoint)  # one finished: one waiting request could start there
    await settle()
    assert len(sent) == 6
    scrape(endpoint, clock, waiting=4)  # the server still has 4 queued of what we sent
    flow.pump()
    await settle()
    assert len(sent) == 7
    scrape(endpoint, clock, waiting=0)
    flow.pump()
    await settle()
    assert len(sent) == 12
    flow.close()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_dispatch_when_saturation_drops_via_the_timer() -> None:
    clock = Clock(time.monotonic())
    store, endpoint, gate = gated_pool(10, clock)
    flow = FlowController(FlowControlConfig(recheck_interval_s=0.01), gate, datastore=store, clock=clock)
    waiter = asyncio.create_task(flow.acquire(POOL, 0, "", 10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    scrape(endpoint, clock, waiting=0)  # the scraper writes metrics without any event
    grant = await asyncio.wait_for(waiter, 5)
    assert grant.wait_s > 0
    flow.close()


async def test_dispatch_when_an_endpoint_joins() -> None:
    clock = Clock(time.monotonic())
    store, _, gate = gated_pool(10, clock)
    flow = FlowController(FlowControlConfig(recheck_interval_s=3600), gate, datastore=store, clock=clock)
    waiter = asyncio.create_task(flow.acquire(POOL, 0, "", 10))
    await settle()
    store.upsert_endpoint(
        Endpoint("sim-1", "10.0.0.2", 8000, POOL, metrics=EndpointMetrics(scraped_at=clock.now))
    )  # pool mean (2 + 0) / 2 = 1 -> still full
    await settle()
    assert not waiter.done()
    store.upsert_endpoint(
        Endpoint("sim-2", "10.0.0.3", 8000, POOL, metrics=EndpointMetrics(scraped_at=clock.now))
    )  # (2 + 0 + 0) / 3 < 1: room
    await asyncio.wait_for(waiter, 5)
    flow.close()


async def test_released_but_unsent_requests_count_against_the_pool() -> None:
    clock = Clock()
    _, endpoint, gate = gated_pool(0, clock)
    assert gate.has_capacity(POOL, in_transit=4)
    assert not gate.has_capacity(POOL, in_transit=5)
    for _ in range(3):
        gate.sent(endpoint)
    assert gate.waiting(endpoint) == 3 and not gate.has_capacity(POOL, in_transit=2)
    scrape(endpoint, clock, waiting=0)
    assert gate.waiting(endpoint) == 0


def test_finishes_never_take_the_estimated_queue_below_zero() -> None:
    clock = Clock()
    _, endpoint, gate = gated_pool(1, clock)
    for _ in range(4):  # four finish on a server with one waiting: its queue is empty, not -3
        clock.now += 0.001
        gate.finished(endpoint)
    for _ in range(5):
        clock.now += 0.001
        gate.sent(endpoint)
    assert gate.waiting(endpoint) == 5 and not gate.has_capacity(POOL, in_transit=0)


# -- property: nothing is ever lost ---------------------------------------------------------

_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("arrive"),
            st.integers(-1, 1),
            st.sampled_from(["", "a", "b"]),
            st.integers(1, 60),
            st.sampled_from([None, 0.0, 0.005, 60.0]),
        ),
        st.tuples(st.just("room"), st.integers(0, 3)),
        st.tuples(st.just("cancel"), st.integers(0, 40)),
        st.tuples(st.just("run")),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=_OPS, ordering=st.sampled_from(["fcfs-ordering-policy", EDF]), global_max=st.sampled_from([None, 3])
)
def test_every_request_ends_exactly_once(
    ops: list[tuple[object, ...]], ordering: str, global_max: int | None
) -> None:
    async def scenario() -> None:
        gate = SlotGate(slots=0)
        config = FlowControlConfig(
            max_requests=global_max,
            default_band=BandConfig(max_bytes=150, ordering=ordering),  # type: ignore[arg-type]
            recheck_interval_s=0.001,
        )
        flow = FlowController(config, gate)
        outcomes: list[FlowOutcome] = []
        flow.subscribe(outcomes.append)
        tasks: list[asyncio.Task[Grant]] = []

        async def request(priority: int, flow_key: str, size: int, ttl: float | None) -> Grant:
            grant = await flow.acquire(POOL, priority, flow_key, size, ttl)
            try:
                await asyncio.sleep(0)  # a holder may be cancelled too; it must still end its grant
            finally:
                grant.done()
            return grant

        for op in ops:
            if op[0] == "arrive":
                _, priority, flow_key, size, ttl = op
                tasks.append(asyncio.create_task(request(priority, flow_key, size, ttl)))  # type: ignore[arg-type]
            elif op[0] == "room":
                gate.slots = int(op[1])  # type: ignore[call-overload]
                flow.pump()
            elif op[0] == "cancel" and tasks:
                tasks[int(op[1]) % len(tasks)].cancel()  # type: ignore[call-overload]
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        flow.close()  # whatever still waits leaves now
        results = await asyncio.gather(*tasks, return_exceptions=True)

        assert flow.waiting() == 0 and all(s.bytes == 0 for s in flow.stats())
        assert flow.in_transit(POOL) == 0
        assert len(outcomes) == len(tasks)  # one outcome per request, never two, never none
        assert all(isinstance(r, Grant | FlowControlError | asyncio.CancelledError) for r in results)
        seen = Counter(
            DISPATCHED if isinstance(r, Grant) else r.outcome
            for r in results
            if isinstance(r, Grant | FlowControlError)
        )
        emitted = Counter(o.outcome for o in outcomes)
        # What the waiters saw is what was emitted, except for waiters that were cancelled:
        # each of those accounts for exactly one outcome (left the queue, or left it otherwise
        # just before the cancellation reached it).
        assert not seen - emitted
        assert (emitted - seen).total() == sum(isinstance(r, asyncio.CancelledError) for r in results)

    asyncio.run(scenario())


# -- Director ----------------------------------------------------------------------------------


class Stack:
    """A Director over one saturated endpoint, with or without flow control."""

    def __init__(self, flow_config: FlowControlConfig | None) -> None:
        self.store = Datastore()
        self.store.upsert_pool(Pool("default", "pool", {"app": "sim"}, [8000]))
        for name, criticality in (("chat", Criticality.CRITICAL), ("batch", Criticality.SHEDDABLE)):
            self.store.upsert_model(ModelRoute("default", name, name, "pool", criticality))
        self.endpoint = self.store.upsert_endpoint(
            Endpoint(
                "sim-0",
                "10.0.0.1",
                8000,
                POOL,
                metrics=EndpointMetrics(waiting_queue_size=50, scraped_at=time.monotonic()),
            )
        )
        admission = Admission(AdmissionConfig())
        self.flow = (
            FlowController(flow_config, DispatchGate(self.store, admission.detector), datastore=self.store)
            if flow_config is not None
            else None
        )
        scheduler = load_scheduler("least-request")
        self.director = Director(
            self.store, lambda pool: scheduler, admission, rng=random.Random(1), flow_control=self.flow
        )
        self.records: list[RequestRecord] = []
        self.director.subscribe(self.records.append)

    def body(self, model: str) -> bytes:
        return orjson.dumps({"model": model, "prompt": "hello", "max_tokens": 4})

    def drain_endpoint(self) -> None:
        self.endpoint.metrics = EndpointMetrics(waiting_queue_size=0, scraped_at=time.monotonic())


async def test_without_flow_control_route_async_is_route() -> None:
    stack = Stack(None)
    with pytest.raises(InferenceError) as sync_error:
        stack.director.route(POOL, "/v1/completions", {"x-request-id": "s"}, stack.body("batch"))
    with pytest.raises(InferenceError) as async_error:
        await stack.director.route_async(POOL, "/v1/completions", {"x-request-id": "a"}, stack.body("batch"))
    assert (sync_error.value.status, type(sync_error.value)) == (
        async_error.value.status,
        type(async_error.value),
    )
    sync_record, async_record = stack.records
    assert async_record.shed_reason == sync_record.shed_reason == "saturated-sheddable"
    assert (async_record.status, async_record.queue_wait_s) == (sync_record.status, 0.0)


async def test_with_flow_control_sheddable_waits_instead_of_being_shed() -> None:
    stack = Stack(FlowControlConfig(recheck_interval_s=0.01))
    assert stack.flow is not None
    waiter = asyncio.create_task(
        stack.director.route_async(POOL, "/v1/completions", {"x-request-id": "q"}, stack.body("batch"))
    )
    await asyncio.sleep(0.05)
    assert not waiter.done() and not stack.records and stack.flow.waiting(POOL) == 1
    stack.drain_endpoint()
    routed = await asyncio.wait_for(waiter, 5)
    assert routed.queue_wait_s >= 0.04 and routed.decision_s < routed.queue_wait_s
    assert stack.flow.in_transit(POOL) == 1
    routed.dispatched(stack.endpoint)  # sent: no longer in transit, counted on its endpoint instead
    assert stack.flow.in_transit(POOL) == 0
    record = routed.finish(200)
    assert record.queue_wait_s == routed.queue_wait_s and record.status == 200
    stack.flow.close()


async def test_with_flow_control_ttl_and_cancellation_are_recorded() -> None:
    stack = Stack(FlowControlConfig(default_request_ttl_s=0.05, recheck_interval_s=0.01))
    assert stack.flow is not None
    with pytest.raises(FlowControlError) as info:
        await stack.director.route_async(POOL, "/v1/completions", {"x-request-id": "t"}, stack.body("chat"))
    assert info.value.status == 503
    record = stack.records[-1]
    assert (record.request_id, record.status, record.shed_reason) == ("t", 503, "queue-ttl-expired")
    assert record.queue_wait_s >= 0.05 and record.priority == 1

    waiter = asyncio.create_task(
        stack.director.route_async(
            POOL, "/v1/completions", {"x-request-id": "c"}, stack.body("chat"), ttl_s=60
        )
    )
    await asyncio.sleep(0.02)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (stack.records[-1].request_id, stack.records[-1].status) == ("c", 499)
    assert stack.flow.waiting(POOL) == 0
    stack.flow.close()


async def test_a_ttl_expiry_is_counted_as_shed_with_its_reason_not_as_an_error() -> None:
    """Both data planes report through one Observation: the queue TTL's 503 is flow control
    refusing the request, like its 429 for a full queue, and reads so on the dashboard, in the
    decision log and in the access log. /metrics keeps upstream's counts: the error counter by
    status, the queue histogram by outcome (EvictedTTL)."""
    stack = Stack(FlowControlConfig(default_request_ttl_s=0.05, recheck_interval_s=0.01))
    assert stack.flow is not None
    lines = io.StringIO()
    observation = Observation(stack.store, access_log=AccessLog(lines))
    observation.attach(stack.director, stack.flow)
    with pytest.raises(FlowControlError):
        await stack.director.route_async(POOL, "/v1/completions", {"x-request-id": "t"}, stack.body("chat"))

    stats = observation.decisions.tally.model_stats(POOL, "chat", now=time.time())
    assert (stats["requests"], stats["shed"], stats["errors"]) == (1, 1, 0)
    [decision] = observation.decisions.recent()
    assert decision_view(decision)["shed_reason"] == "queue-ttl-expired"
    line = orjson.loads(lines.getvalue())
    assert (line["status"], line["shed_reason"]) == (503, "queue-ttl-expired")
    exposition = observation.metrics.exposition().decode()
    assert 'inference_model_request_error_total{error_code="503",model_name="chat"' in exposition
    assert re.search(
        r'^inference_extension_flow_control_request_queue_duration_seconds_count\{[^}]*outcome="EvictedTTL"[^}]*\} 1\.0$',
        exposition,
        re.M,
    )
    observation.detach()
    stack.flow.close()


async def test_with_flow_control_an_empty_pool_is_still_503_at_once() -> None:
    stack = Stack(FlowControlConfig())
    stack.store.remove_endpoint(POOL, "sim-0")
    with pytest.raises(InferenceError) as info:
        await stack.director.route_async(POOL, "/v1/completions", {}, stack.body("chat"))
    assert (info.value.status, stack.records[-1].shed_reason) == (503, "no-ready-endpoints")


# -- configuration and metrics ---------------------------------------------------------------

BASE_CONFIG = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins: [{type: max-score-picker}]
schedulingProfiles: [{name: p, plugins: [{pluginRef: max-score-picker}]}]
"""


def test_flow_control_section_is_used_only_with_the_feature_gate() -> None:
    section = "flowControl: {maxBytes: 1Gi, maxRequests: 500, defaultRequestTTL: 1m30s}\n"
    assert parse_config(BASE_CONFIG + section).flow_control_config() is None
    config = parse_config(BASE_CONFIG + section + "featureGates: [flowControl]\n").flow_control_config()
    assert config is not None
    assert (config.max_bytes, config.max_requests, config.default_request_ttl_s) == (2**30, 500, 90.0)
    bare = parse_config(BASE_CONFIG + "featureGates: [flowControl]\n").flow_control_config()
    assert bare == FlowControlConfig()  # the gate alone: upstream defaults (no TTL, 1 GB per band)


def test_bands_inherit_the_default_band_template() -> None:
    text = (
        BASE_CONFIG
        + """
featureGates: [flowControl]
flowControl:
  defaultPriorityBand: {maxRequests: 100, orderingPolicyRef: edf-ordering-policy}
  priorityBands:
  - {priority: 1, maxBytes: 500M, fairnessPolicyRef: global-strict-fairness-policy}
  - {priority: -1, maxRequests: 0}
"""
    )
    config = parse_config(text).flow_control_config()
    assert config is not None
    assert config.band(1) == BandConfig(500_000_000, 100, GLOBAL_STRICT, EDF)
    assert config.band(-1).max_requests == 0 and config.band(-1).ordering == EDF
    assert config.band(7) == config.default_band == BandConfig(max_requests=100, ordering=EDF)


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ("flowControl: {maxBytes: lots}", "flowControl.maxBytes"),
        ("flowControl: {maxBytes: 0}", "flowControl.maxBytes"),
        ("flowControl: {maxRequests: -1}", "flowControl.maxRequests"),
        ("flowControl: {defaultRequestTTL: soon}", "flowControl.defaultRequestTTL"),
        (
            "flowControl: {priorityBands: [{priority: 1, orderingPolicyRef: lifo}]}",
            "flowControl.priorityBands[0].orderingPolicyRef",
        ),
        ("flowControl: {priorityBands: [{maxBytes: 1}]}", "flowControl.priorityBands[0].priority"),
        ("flowControl: {priorityBands: [{priority: 1}, {priority: 1}]}", "flowControl.priorityBands"),
        ("flowControl: {queueDepth: 3}", "flowControl.queueDepth"),
    ],
)
def test_flow_control_errors_name_the_field(section: str, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE_CONFIG + section + "\n", "epp.yaml")
    assert any(p.startswith(f"{where}:") for p in info.value.problems), info.value.problems


def test_builtin_flow_control_profile() -> None:
    config = load_flow_control("flow-control")
    assert config is not None and config.default_request_ttl_s == 30.0
    assert load_flow_control("default") is None
    assert load_scheduler("flow-control").profile.name == "flow-control"


def test_durations_and_quantities() -> None:
    assert [parse_duration(v) for v in ("30s", "1500ms", "1h1m", "2.5", 3)] == [30.0, 1.5, 3660.0, 2.5, 3.0]
    assert [parse_quantity(v) for v in ("1Gi", "500M", "1e3", 42, "2k")] == [
        2**30,
        500 * 10**6,
        1000,
        42,
        2000,
    ]
    for bad in ("-1s", "1d", "s"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    for bad in ("1m", "-5", "1 GB"):
        with pytest.raises(ValueError):
            parse_quantity(bad)


async def test_metrics_have_upstream_names_per_pool_and_priority() -> None:
    gate = SlotGate(slots=0)
    flow, _ = controller(gate, default_request_ttl_s=0.02)
    metrics = GatewayMetrics()
    metrics.watch_flow_control(flow)
    waiter = asyncio.create_task(flow.acquire(POOL, -1, "", 321))
    await settle()
    text = metrics.exposition().decode()
    assert 'inference_extension_flow_control_queue_size{inference_pool="pool",priority="-1"} 1.0' in text
    assert 'inference_extension_flow_control_queue_bytes{inference_pool="pool",priority="-1"} 321.0' in text
    with pytest.raises(FlowControlError):
        await waiter
    gate.slots = 1
    (await flow.acquire(POOL, 1, "", 1)).done()
    text = metrics.exposition().decode()
    assert 'inference_extension_flow_control_queue_size{inference_pool="pool",priority="-1"} 0.0' in text
    duration = "inference_extension_flow_control_request_queue_duration_seconds_count"
    assert f'{duration}{{inference_pool="pool",outcome="EvictedTTL",priority="-1"}} 1.0' in text
    assert f'{duration}{{inference_pool="pool",outcome="Dispatched",priority="1"}} 1.0' in text


# -- both data planes take flow control from their profile -------------------------------------


async def test_epp_queues_through_its_router_with_the_flow_control_profile() -> None:
    stack = Stack(None)  # only for its datastore: one saturated endpoint, models chat and batch
    app = EppApp(EppConfig(scheduler="flow-control"), stack.store)
    flow = app.core.flow_control
    assert flow is not None and app.director.flow_control is flow
    waiter = asyncio.create_task(
        app.director.route_async(POOL, "/v1/completions", {":path": "/v1/completions"}, stack.body("batch"))
    )
    await asyncio.sleep(0.05)
    assert not waiter.done() and flow.waiting(POOL) == 1
    text = app.metrics.exposition().decode()
    assert 'inference_extension_flow_control_queue_size{inference_pool="pool",priority="-1"} 1.0' in text
    stack.drain_endpoint()
    routed = await asyncio.wait_for(waiter, 5)
    routed.finish(200)
    flow.close()
    assert app.director.flow_control is not None
    assert EppApp(EppConfig(scheduler="default"), Datastore()).director.flow_control is None


def test_gateway_runtime_takes_flow_control_from_its_profile() -> None:
    runtime = GatewayRuntime([], RuntimeConfig(profile="flow-control"))
    flow = runtime.core.flow_control
    assert flow is not None and runtime.core.director.flow_control is flow
    assert flow.config.default_request_ttl_s == 30.0
    assert GatewayRuntime([], RuntimeConfig()).core.director.flow_control is None


class PreparingScheduler:
    """least-request, with a plugin's work before scheduling that waits until released."""

    prepares = True

    def __init__(self) -> None:
        self._inner = load_scheduler("least-request")
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def prepare(self, body: object) -> None:
        self.entered.set()
        await self.release.wait()

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


@pytest.mark.parametrize("flow_control", [True, False], ids=["flow-control", "no-flow-control"])
async def test_a_request_cancelled_in_the_schedulers_prepare_is_a_499_and_holds_nothing(
    flow_control: bool,
) -> None:
    stack = Stack(FlowControlConfig(recheck_interval_s=0.01) if flow_control else None)
    stack.drain_endpoint()
    scheduler = PreparingScheduler()
    stack.director.scheduler_for = lambda pool: scheduler  # type: ignore[assignment]
    waiter = asyncio.create_task(
        stack.director.route_async(POOL, "/v1/completions", {"x-request-id": "p"}, stack.body("chat"))
    )
    await asyncio.wait_for(scheduler.entered.wait(), 5)
    if stack.flow is not None:
        assert stack.flow.in_transit(POOL) == 1  # its turn came: it holds the grant while preparing
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert [(r.request_id, r.status) for r in stack.records] == [("p", 499)]  # recorded once
    assert stack.flow is None or stack.flow.in_transit(POOL) == 0  # the turn is given back
    scheduler.release.set()
    routed = await stack.director.route_async(
        POOL, "/v1/completions", {"x-request-id": "q"}, stack.body("chat")
    )
    routed.dispatched(stack.endpoint)
    assert routed.finish(200).request_id == "q" and stack.endpoint.in_flight == 0
    if stack.flow is not None:
        assert stack.flow.in_transit(POOL) == 0
        stack.flow.close()
