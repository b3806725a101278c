"""Tracing for both data planes: W3C trace context in and on to the model server, OpenTelemetry
spans out over OTLP. Built only when an OTLP endpoint is configured (`--otlp-traces-endpoint`,
vLLM's flag); without one, no data plane holds a `Tracing` and nothing here runs per request.

A data plane calls `join` with the request's headers (continuing the caller's trace, or
starting one) and sends the model server `upstream_headers`: a traceparent whose parent is
this plane's request span. Whether a trace is recorded is the SDK sampler's call, configured
as every OpenTelemetry SDK is (OTEL_TRACES_SAMPLER, default parentbased_always_on: follow the
caller's sampled flag, record every trace this plane begins). The trace context rides on the request's record; `export`, an
Observation subscriber, turns each finished record into spans (observe/spans.py) and hands
them to a batching processor, whose own thread does the encoding and the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, MutableMapping

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    TraceState,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from inferpool.observe.spans import REQUEST_SPAN, record_spans
from inferpool.records import RequestRecord, TraceContext

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
SCOPE = "inferpool"


def resource_for(service_name: str) -> Resource:
    """OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES as the SDK reads them, else `service_name`."""
    detected = Resource.create()
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        return detected.merge(Resource({SERVICE_NAME: service_name}))
    return detected


def sampler_from_env() -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG name, as the SDK's provider reads them."""
    return TracerProvider(shutdown_on_exit=False).sampler


class Tracing:
    """Trace context and span export of one process (one data plane)."""

    def __init__(
        self, processor: SpanProcessor, service_name: str, plane: str, sampler: Sampler | None = None
    ) -> None:
        self.plane = plane  # "gateway" or "epp", on every request span
        self.resource = resource_for(service_name)
        self.scope = InstrumentationScope(SCOPE)
        self.sampler = sampler or sampler_from_env()
        self._processor = processor
        self._ids = RandomIdGenerator()
        self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def otlp(cls, endpoint: str, service_name: str, plane: str) -> Tracing:
        """Batched OTLP/gRPC export to `endpoint` (read as vLLM reads it: `http://host:4317` is
        plaintext, `https://` or a bare `host:port` is TLS unless OTEL_EXPORTER_OTLP_INSECURE=true)."""
        # Imported here: the exporter (with grpc and the OTLP protobufs) is most of this module's
        # import time, and a process without an OTLP endpoint never builds one.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return cls(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)), service_name, plane)

    # -- propagation (per request, on the data plane) ------------------------------------------
    def join(self, headers: Mapping[str, str]) -> TraceContext:
        """This plane's place in the request's trace: a child of the caller's traceparent if it
        sent a valid one (its tracestate kept), else the root of a new trace; sampled as the
        sampler decides (by default: as the caller said, and always for a new trace)."""
        context = self._propagator.extract(headers)
        caller = get_current_span(context).get_span_context()
        trace_id = caller.trace_id if caller.is_valid else self._ids.generate_trace_id()
        sampled = self.sampler.should_sample(context, trace_id, REQUEST_SPAN).decision.is_sampled()
        if caller.is_valid:
            return TraceContext(
                trace_id,
                self._ids.generate_span_id(),
                caller.span_id,
                sampled,
                caller.trace_state.to_header(),
            )
        return TraceContext(trace_id, self._ids.generate_span_id(), None, sampled)

    def upstream_headers(self, trace: TraceContext) -> dict[str, str | None]:
        """The trace headers the model server gets: traceparent naming this plane's request span,
        and the caller's tracestate (None: remove any tracestate the request carries)."""
        flags = TraceFlags(TraceFlags.SAMPLED if trace.sampled else TraceFlags.DEFAULT)
        state = TraceState.from_header([trace.tracestate]) if trace.tracestate else None
        span = NonRecordingSpan(SpanContext(trace.trace_id, trace.span_id, False, flags, state))
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, set_span_in_context(span))
        return {TRACEPARENT: carrier[TRACEPARENT], TRACESTATE: carrier.get(TRACESTATE)}

    def propagate(self, trace: TraceContext, headers: MutableMapping[str, str]) -> None:
        """Put `upstream_headers` into a request's (lower-case) headers in place."""
        for name, value in self.upstream_headers(trace).items():
            if value is None:
                headers.pop(name, None)
            else:
                headers[name] = value

    # -- export (per finished request, an Observation subscriber) -------------------------------
    def export(self, record: RequestRecord) -> None:
        """Spans of a finished request that joined a sampled trace; the processor batches them."""
        trace = record.trace
        if trace is None or not trace.sampled:
            return
        spans = record_spans(
            record,
            trace,
            resource=self.resource,
            scope=self.scope,
            new_span_id=self._ids.generate_span_id,
            plane=self.plane,
        )
        for span in spans:
            self._processor.on_end(span)

    async def close(self) -> None:
        """Send what is still batched (bounded by the exporter's timeout), then stop the exporter."""
        await asyncio.to_thread(self._processor.shutdown)
