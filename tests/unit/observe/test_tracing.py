"""Trace context in and out (W3C, through OpenTelemetry's propagator) and the spans a record makes."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from inferpool.observe.tracing import Tracing, resource_for
from inferpool.records import CandidateScore, HttpFacts, PrefillLeg, RequestRecord, TraceContext

CALLER_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
CALLER_SPAN = 0x00F067AA0BA902B7
CALLER = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=1,b=2"}
STARTED = 1_700_000_000.0


@pytest.fixture
def exported() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exported: InMemorySpanExporter) -> Tracing:
    return Tracing(SimpleSpanProcessor(exported), "inferpool-test", "gateway")


def test_join_continues_the_callers_trace_with_a_span_of_its_own(tracing: Tracing) -> None:
    trace = tracing.join(CALLER)
    assert (trace.trace_id, trace.parent_span_id, trace.sampled) == (CALLER_TRACE, CALLER_SPAN, True)
    assert trace.span_id not in (0, CALLER_SPAN)
    assert trace.tracestate == "a=1,b=2"
    assert tracing.upstream_headers(trace) == {
        "traceparent": f"00-{CALLER_TRACE:032x}-{trace.span_id:016x}-01",
        "tracestate": "a=1,b=2",
    }


def test_an_unsampled_caller_is_propagated_unsampled(tracing: Tracing) -> None:
    trace = tracing.join({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"})
    assert not trace.sampled
    assert tracing.upstream_headers(trace)["traceparent"].endswith(f"-{trace.span_id:016x}-00")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": "garbage", "tracestate": "a=1"},
        {"traceparent": "00-00000000000000000000000000000000-00f067aa0ba902b7-01"},  # all-zero trace id
        {"traceparent": "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},  # forbidden version
    ],
)
def test_without_a_valid_traceparent_the_plane_begins_a_sampled_trace(
    tracing: Tracing, headers: dict[str, str]
) -> None:
    trace = tracing.join(headers)
    assert trace.parent_span_id is None and trace.sampled and trace.trace_id != 0
    upstream = tracing.upstream_headers(trace)
    assert upstream["traceparent"] == f"00-{trace.trace_id:032x}-{trace.span_id:016x}-01"
    assert upstream["tracestate"] is None  # a stale tracestate of another trace is removed

    forwarded = {"tracestate": "a=1", "x-request-id": "r"}
    tracing.propagate(trace, forwarded)
    assert forwarded == {"traceparent": upstream["traceparent"], "x-request-id": "r"}


@pytest.mark.parametrize(
    ("sampler", "arg", "caller_flags", "sampled"),
    [
        ("parentbased_always_off", None, "01", True),  # the caller's decision wins
        ("parentbased_always_off", None, None, False),  # a trace begun here is not recorded
        ("parentbased_always_on", None, "00", False),
        ("always_on", None, "00", True),
        ("parentbased_traceidratio", "0", None, False),
        ("parentbased_traceidratio", "1", None, True),
    ],
)
def test_sampling_follows_otel_traces_sampler(
    monkeypatch: pytest.MonkeyPatch, sampler: str, arg: str | None, caller_flags: str | None, sampled: bool
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    if arg is not None:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    tracing = Tracing(SimpleSpanProcessor(InMemorySpanExporter()), "t", "gateway")
    headers = (
        {"traceparent": f"00-{CALLER_TRACE:032x}-{CALLER_SPAN:016x}-{caller_flags}"} if caller_flags else {}
    )
    trace = tracing.join(headers)
    assert trace.sampled is sampled
    assert tracing.upstream_headers(trace)["traceparent"].endswith("-01" if sampled else "-00")


def test_service_name_defaults_to_the_plane_and_yields_to_otel_service_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    assert resource_for("inferpool-epp").attributes["service.name"] == "inferpool-epp"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-picker")
    assert resource_for("inferpool-epp").attributes["service.name"] == "edge-picker"


def record(trace: TraceContext | None, **fields: object) -> RequestRecord:
    base: dict[str, object] = dict(
        request_id="r1",
        pool="default/pool",
        model="food-review",
        target_model="food-review-1",
        status=200,
        started_at=STARTED,
        e2e_s=0.5,
        http=HttpFacts("POST", "/v1/completions?x=1", "default/gw/http", trace=trace),
    )
    return RequestRecord(**{**base, **fields})  # type: ignore[arg-type]


ROUTED = dict(
    routed=True,
    endpoint="pod-a",
    hostport="10.0.0.1:8000",
    attempts=1,
    stream=True,
    ttft_s=0.2,
    prompt_tokens=12,
    completion_tokens=3,
    profile="default",
    scores=(
        CandidateScore("pod-a", "10.0.0.1:8000", 0.9, {"queue": 1.0, "kv-cache": 0.8}),
        CandidateScore("pod-b", "10.0.0.2:8000", 0.4, {"queue": 0.2, "kv-cache": 0.6}),
    ),
    filtered_out={"pod-c": "lora-affinity"},
    routing_started_s=0.001,
    admitted_s=0.002,
    queue_wait_s=0.01,
    decision_s=0.0015,
    dispatched_s=0.013,
    response_started_s=0.1,
)


def spans_by_name(exported: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exported.get_finished_spans()
    assert len({s.name for s in spans}) == len(spans)
    return {s.name: s for s in spans}


def at(offset_s: float) -> int:
    return int(STARTED * 1e9) + round(offset_s * 1e9)


def test_a_routed_request_is_one_span_per_step_under_the_request_span(
    tracing: Tracing, exported: InMemorySpanExporter
) -> None:
    trace = tracing.join(CALLER)
    tracing.export(record(trace, **ROUTED))
    spans = spans_by_name(exported)
    request = spans.pop("gateway.request")
    assert request.context.span_id == trace.span_id and request.context.trace_id == CALLER_TRACE
    assert request.parent is not None and request.parent.span_id == CALLER_SPAN and request.parent.is_remote
    assert request.kind is SpanKind.SERVER
    assert (request.start_time, request.end_time) == (at(0), at(0.5))
    assert request.resource.attributes["service.name"] == "inferpool-test"
    assert request.attributes is not None
    assert request.attributes["url.path"] == "/v1/completions"
    assert request.attributes["gen_ai.request.model"] == "food-review"
    assert request.attributes["inferpool.target_model"] == "food-review-1"
    assert request.attributes["inferpool.plane"] == "gateway"
    timeline = {name: (s.start_time, s.end_time) for name, s in spans.items()}
    assert timeline == {
        "gateway.admission": (at(0.001), at(0.002)),
        "gateway.queue": (at(0.002), at(0.012)),
        "gateway.scheduling": (at(0.012), at(0.0125)),
        "gateway.dispatch": (at(0.013), at(0.1)),
        "gateway.response": (at(0.1), at(0.5)),
    }
    for span in spans.values():
        assert span.parent == request.context
        assert span.context.trace_id == CALLER_TRACE
        assert span.status.status_code is StatusCode.UNSET
    assert spans["gateway.scheduling"].attributes == {
        "inferpool.scheduler.profile": "default",
        "inferpool.pick": "pod-a",
        "inferpool.pick.address": "10.0.0.1:8000",
        "inferpool.candidates": ["pod-a", "pod-b"],
        "inferpool.candidate_scores": [0.9, 0.4],
        "inferpool.scorer.kv-cache": [0.8, 0.6],
        "inferpool.scorer.queue": [1.0, 0.2],
        "inferpool.filtered_out": ["pod-c: lora-affinity"],
    }
    dispatch = spans["gateway.dispatch"].attributes
    assert dispatch is not None
    assert (dispatch["server.address"], dispatch["server.port"]) == ("10.0.0.1", 8000)
    [first_token] = spans["gateway.response"].events
    assert (first_token.name, first_token.timestamp) == ("first_token", at(0.2))


def test_a_shed_request_ends_in_the_admission_span_with_the_error(
    tracing: Tracing, exported: InMemorySpanExporter
) -> None:
    shed = record(
        tracing.join({}),
        status=429,
        error="pool saturated",
        shed_reason="saturated",
        routing_started_s=0.001,
        decision_s=0.0005,
    )
    tracing.export(shed)
    spans = spans_by_name(exported)
    assert sorted(spans) == ["gateway.admission", "gateway.request"]
    assert spans["gateway.request"].parent is None
    for span in spans.values():
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "pool saturated"
    admission = spans["gateway.admission"]
    assert (admission.start_time, admission.end_time) == (at(0.001), at(0.0015))
    assert admission.attributes is not None and admission.attributes["inferpool.shed_reason"] == "saturated"


def test_a_request_refused_before_the_core_is_the_request_span_alone(
    tracing: Tracing, exported: InMemorySpanExporter
) -> None:
    tracing.export(record(tracing.join(CALLER), pool=None, status=401, error="bad key", e2e_s=0.001))
    [span] = exported.get_finished_spans()
    assert span.name == "gateway.request" and span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None and span.attributes["error.type"] == "401"


def test_a_service_backend_has_dispatch_and_response_but_no_routing(
    tracing: Tracing, exported: InMemorySpanExporter
) -> None:
    tracing.export(
        record(
            tracing.join(CALLER),
            pool=None,
            hostport="[::1]:9000",
            dispatched_s=0.002,
            response_started_s=0.05,
        )
    )
    spans = spans_by_name(exported)
    assert sorted(spans) == ["gateway.dispatch", "gateway.request", "gateway.response"]
    dispatch = spans["gateway.dispatch"].attributes
    assert dispatch is not None and (dispatch["server.address"], dispatch["server.port"]) == ("::1", 9000)


def test_nothing_is_exported_for_unsampled_or_untraced_requests(
    tracing: Tracing, exported: InMemorySpanExporter
) -> None:
    unsampled = tracing.join({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"})
    tracing.export(record(unsampled, **ROUTED))
    tracing.export(record(None, **ROUTED))
    tracing.export(record(None, http=None))  # the virtual-time bench has no data plane
    assert exported.get_finished_spans() == ()


def test_a_split_request_has_a_prefill_span_inside_dispatch(
    tracing: Tracing, exported: InMemorySpanExporter
) -> None:
    leg = PrefillLeg("pod-p", "10.0.0.9:8000", 0, 0.004, "ClientConnectorError: refused", fell_back=True)
    tracing.export(record(tracing.join(CALLER), **{**ROUTED, "prefill": leg}))
    spans = spans_by_name(exported)
    prefill = spans["gateway.prefill"]
    assert (prefill.start_time, prefill.end_time) == (at(0.013), at(0.017))
    assert prefill.parent == spans["gateway.request"].context
    assert prefill.attributes == {
        "inferpool.prefill.endpoint": "pod-p",
        "inferpool.prefill.address": "10.0.0.9:8000",
        "inferpool.prefill.fell_back": True,
        "inferpool.prefill.error": "ClientConnectorError: refused",
    }
    assert (spans["gateway.dispatch"].start_time, spans["gateway.dispatch"].end_time) == (at(0.013), at(0.1))
