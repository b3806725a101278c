"""What tracing costs per request, off and on (docs/tracing.md quotes these): few rounds, figures
printed with -s, nothing asserted on time. Budget: 5 s."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from inferpool.admission import Admission, AdmissionConfig
from inferpool.observe.spans import record_spans
from inferpool.observe.tracing import Tracing
from inferpool.records import HttpFacts, RequestRecord
from inferpool.request import Director
from inferpool.scheduling import SchedulerSpec
from inferpool.state import Criticality, Datastore, Endpoint, ModelRoute, Pool

POOL = "default/pool"
BODY = orjson.dumps({"model": "base", "prompt": "Rate this pizza " * 20, "max_tokens": 16})
RESPONSE = orjson.dumps(
    {"choices": [{"text": "ok"}], "usage": {"prompt_tokens": 80, "completion_tokens": 16}}
)
CALLER = {
    "content-type": "application/json",
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
}


class Discard(SpanExporter):
    """Takes batches and drops them: the processor's queue and thread without any network."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def director() -> Director:
    store = Datastore()
    store.upsert_pool(Pool("default", "pool", {"app": "vllm"}, [8000]))
    store.upsert_model(ModelRoute("default", "base", "base", "pool", Criticality.CRITICAL))
    for i in range(8):
        store.upsert_endpoint(Endpoint(f"pod{i}", f"10.0.0.{i}", 8000, POOL))
    spec = SchedulerSpec.load("default")
    scheduler = spec.build()
    return Director(store, lambda pool: scheduler, Admission(AdmissionConfig()), rng=random.Random(1))


def lifecycle(d: Director, tracing: Tracing | None) -> Callable[[], RequestRecord]:
    """One request through the core as a data plane drives it: route, dispatch, answer, finish."""

    def one() -> RequestRecord:
        trace = tracing.join(CALLER) if tracing is not None else None
        routed = d.route(
            POOL, "/v1/completions", CALLER, BODY, http=HttpFacts("POST", "/v1/completions", trace=trace)
        )
        if tracing is not None and trace is not None:
            tracing.upstream_headers(trace)
        routed.dispatched(routed.candidates[0])
        routed.response_started(200, "application/json")
        routed.response_data(RESPONSE)
        return routed.finish(200)

    return one


def per_call_us(fn: Callable[[], object], seconds: float = 0.3) -> float:
    """Best of three runs of `seconds` each, in microseconds per call (the least disturbed one)."""
    best = float("inf")
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(50):
                fn()
            calls += 50
        best = min(best, elapsed / calls * 1e6)
    return best


@pytest.fixture
def tracing() -> Tracing:
    return Tracing(BatchSpanProcessor(Discard()), "bench", "gateway")


def test_core_lifecycle_tracing_off(benchmark) -> None:  # type: ignore[no-untyped-def]
    record = benchmark.pedantic(lifecycle(director(), None), rounds=200, iterations=5, warmup_rounds=20)
    assert record.trace is None and record.response_started_s is not None


def test_core_lifecycle_tracing_on(benchmark, tracing: Tracing) -> None:  # type: ignore[no-untyped-def]
    d = director()
    d.subscribe(tracing.export)
    record = benchmark.pedantic(lifecycle(d, tracing), rounds=200, iterations=5, warmup_rounds=20)
    assert record.trace is not None


def test_tracing_cost_table(capsys: pytest.CaptureFixture[str], tracing: Tracing) -> None:
    """The figures docs/tracing.md gives, printed (run with -s to see them)."""
    off = per_call_us(lifecycle(director(), None))
    d = director()
    d.subscribe(tracing.export)
    on = per_call_us(lifecycle(d, tracing))
    trace = tracing.join(CALLER)
    join = per_call_us(lambda: tracing.join(CALLER))
    headers = per_call_us(lambda: tracing.upstream_headers(trace))
    record = lifecycle(director(), tracing)()
    spans = record_spans(
        record, trace, resource=tracing.resource, scope=tracing.scope, new_span_id=lambda: 1, plane="gateway"
    )
    build = per_call_us(
        lambda: record_spans(
            record,
            trace,
            resource=tracing.resource,
            scope=tracing.scope,
            new_span_id=lambda: 1,
            plane="gateway",
        )
    )
    encode = per_call_us(lambda: encode_spans(spans).SerializeToString())
    with capsys.disabled():
        print("\nper request, µs (best of 3)")
        print(f"  core lifecycle, tracing off (route, dispatch, answer, finish)   {off:8.1f}")
        print(f"  core lifecycle, tracing on (+ join, headers, spans queued)      {on:8.1f}")
        print(f"    join the caller's traceparent                                 {join:8.1f}")
        print(f"    the model server's traceparent/tracestate                     {headers:8.1f}")
        print(f"    {len(spans)} spans from the record                                     {build:8.1f}")
        print(f"    OTLP protobuf encoding (exporter thread)                      {encode:8.1f}")
    assert len(spans) == 5  # request, admission, scheduling, dispatch, response
