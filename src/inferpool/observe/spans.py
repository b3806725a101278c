"""One finished request's spans, drawn from its record after the fact.

The record carries when each step began (offsets from arrival) and the trace context the data
plane joined, so the spans are built once, at finish time, off the request path: nothing on
the way through the gateway opens or closes a span. The request span keeps the span id the
plane already put in the model server's `traceparent`, which is why the spans are built as
SDK `ReadableSpan`s here rather than started through a Tracer (that would pick its own ids).

    gateway.request                       arrival → last byte (or the refusal)
      gateway.admission                   the core began routing → admission let it through
      gateway.queue                       flow control's wait (only when the request queued)
      gateway.scheduling                  the scheduler's pick: attributes name it and the top scores
      gateway.dispatch                    sent to the model server → its response headers
      gateway.response                    response headers → last byte; event `first_token`
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from inferpool.records import PrefillLeg, RequestRecord, TraceContext

REQUEST_SPAN = "gateway.request"
ADMISSION_SPAN = "gateway.admission"
QUEUE_SPAN = "gateway.queue"
SCHEDULING_SPAN = "gateway.scheduling"
DISPATCH_SPAN = "gateway.dispatch"
PREFILL_SPAN = "gateway.prefill"  # P/D: the prefill leg, inside dispatch (which ends at the answer)
RESPONSE_SPAN = "gateway.response"
FIRST_TOKEN_EVENT = "first_token"

Attributes = dict[str, AttributeValue]


@dataclass
class _Step:
    name: str
    start_s: float  # after arrival
    end_s: float
    attributes: Attributes
    events: list[tuple[str, float]] = field(default_factory=list)  # (name, seconds after arrival)


def record_spans(
    record: RequestRecord,
    trace: TraceContext,
    *,
    resource: Resource,
    scope: InstrumentationScope,
    new_span_id: Callable[[], int],
    plane: str,
) -> list[ReadableSpan]:
    """The request span and its children; the last child and the request span carry a failure."""
    base_ns = int(record.started_at * 1e9)
    end_s = record.e2e_s
    flags = TraceFlags(TraceFlags.SAMPLED if trace.sampled else TraceFlags.DEFAULT)
    state = TraceState.from_header([trace.tracestate]) if trace.tracestate else TraceState()
    context = SpanContext(trace.trace_id, trace.span_id, False, flags, state)
    parent = (
        SpanContext(trace.trace_id, trace.parent_span_id, True, flags, state)
        if trace.parent_span_id is not None
        else None
    )
    failed = record.failed
    error = Status(StatusCode.ERROR, record.error or f"HTTP {record.status}") if failed else Status()

    def ns(offset_s: float) -> int:
        return base_ns + round(min(max(offset_s, 0.0), end_s) * 1e9)

    steps = list(_steps(record))
    spans = [
        ReadableSpan(
            name=REQUEST_SPAN,
            context=context,
            parent=parent,
            resource=resource,
            attributes=_request_attributes(record, plane),
            kind=SpanKind.SERVER,
            status=error,
            start_time=base_ns,
            end_time=ns(end_s),
            instrumentation_scope=scope,
        )
    ]
    for i, step in enumerate(steps):
        spans.append(
            ReadableSpan(
                name=step.name,
                context=SpanContext(trace.trace_id, new_span_id(), False, flags, state),
                parent=context,
                resource=resource,
                attributes=step.attributes,
                events=[Event(name, timestamp=ns(at)) for name, at in step.events],
                kind=SpanKind.INTERNAL,
                status=error if i == len(steps) - 1 else Status(),
                start_time=ns(step.start_s),
                end_time=ns(max(step.end_s, step.start_s)),
                instrumentation_scope=scope,
            )
        )
    return spans


def _steps(r: RequestRecord) -> Iterator[_Step]:
    if r.routing_started_s is not None:
        decided_s = r.routing_started_s + r.queue_wait_s + r.decision_s  # picked, or refused
        admitted_s = r.admitted_s
        yield _Step(
            ADMISSION_SPAN,
            r.routing_started_s,
            admitted_s if admitted_s is not None else decided_s,
            _clean(
                {
                    "inferpool.priority": r.priority,
                    "inferpool.objective": r.objective,
                    "inferpool.fairness_id": r.fairness_id,
                    "inferpool.saturation": r.saturation,
                    "inferpool.shed_reason": r.shed_reason if admitted_s is None else None,
                }
            ),
        )
        if admitted_s is not None:
            if r.queue_wait_s > 0:
                yield _Step(QUEUE_SPAN, admitted_s, admitted_s + r.queue_wait_s, {})
            if r.routed or r.profile is not None:
                yield _Step(SCHEDULING_SPAN, admitted_s + r.queue_wait_s, decided_s, _scheduling(r))
    if r.dispatched_s is not None:
        answered_s = r.response_started_s if r.response_started_s is not None else r.e2e_s
        leg = r.prefill
        if leg is not None and leg.duration_s is not None:  # the leg runs first, from dispatch on
            yield _Step(PREFILL_SPAN, r.dispatched_s, r.dispatched_s + leg.duration_s, _prefill(leg))
        yield _Step(DISPATCH_SPAN, r.dispatched_s, answered_s, _dispatch(r))
    if r.response_started_s is not None:
        yield _Step(
            RESPONSE_SPAN,
            r.response_started_s,
            r.e2e_s,
            {"inferpool.response_bytes": r.response_bytes},
            [(FIRST_TOKEN_EVENT, r.ttft_s)] if r.ttft_s is not None else [],
        )


def _request_attributes(r: RequestRecord, plane: str) -> Attributes:
    """Each fact on one span only: a step's own facts are on its child (the OTLP encoding costs
    per attribute)."""
    http = r.http
    path = http.path.split("?", 1)[0] if http is not None else None
    return _clean(
        {
            "inferpool.plane": plane,
            "inferpool.request_id": r.request_id,
            "http.request.method": http.method if http is not None else None,
            "url.path": path,
            "http.response.status_code": r.status or None,
            "error.type": str(r.status) if r.failed else None,
            "gen_ai.request.model": r.model or None,
            "inferpool.target_model": r.target_model or None,
            "inferpool.pool": r.pool,
            "inferpool.listener": http.listener if http is not None else None,
            "inferpool.route": http.route if http is not None else None,
            "inferpool.backend": http.backend if http is not None else None,
            "inferpool.endpoint": r.endpoint,
            "inferpool.stream": r.stream,
            "gen_ai.usage.input_tokens": r.prompt_tokens,
            "gen_ai.usage.output_tokens": r.completion_tokens,
            "inferpool.cached_tokens": r.cached_tokens,
            "inferpool.request_bytes": r.request_bytes,
        }
    )


def _scheduling(r: RequestRecord) -> Attributes:
    """The pick and the top candidates: names, totals, and each scorer's raw score, index-aligned."""
    scores = r.scores
    attrs: Attributes = _clean(
        {
            "inferpool.scheduler.profile": r.profile,
            "inferpool.pick": scores[0].endpoint if scores else None,
            "inferpool.pick.address": scores[0].hostport if scores else None,
        }
    )
    if scores:
        attrs["inferpool.candidates"] = [s.endpoint for s in scores]
        attrs["inferpool.candidate_scores"] = [float(s.total) for s in scores]
        scorers = sorted({name for s in scores for name in s.scores})
        for name in scorers:
            attrs[f"inferpool.scorer.{name}"] = [float(s.scores.get(name, float("nan"))) for s in scores]
    if r.filtered_out:
        attrs["inferpool.filtered_out"] = [f"{e}: {why}" for e, why in sorted(r.filtered_out.items())]
    return attrs


def _dispatch(r: RequestRecord) -> Attributes:
    address, port = None, None
    if r.hostport:
        host, _, port_text = r.hostport.rpartition(":")
        address = host.strip("[]") or None
        port = int(port_text) if port_text.isdigit() else None
    return _clean(
        {
            "server.address": address,
            "server.port": port,
            "inferpool.attempts": r.attempts,
        }
    )


def _prefill(leg: PrefillLeg) -> Attributes:
    return _clean(
        {
            "inferpool.prefill.endpoint": leg.endpoint,
            "inferpool.prefill.address": leg.hostport,
            "http.response.status_code": leg.status or None,
            "inferpool.prefill.fell_back": leg.fell_back,
            "inferpool.prefill.error": leg.error,
        }
    )


def _clean(attributes: dict[str, AttributeValue | None]) -> Attributes:
    return {k: v for k, v in attributes.items() if v is not None}
