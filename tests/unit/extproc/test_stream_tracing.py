"""The picker's pick answer carries the model server's traceparent (tracing on), in every body mode."""

from __future__ import annotations

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from inferpool.extproc.stream import RequestStream, StreamConfig
from inferpool.observe.tracing import Tracing
from inferpool.records import HttpFacts

from .fakes import POOL, FakeRouted, FakeRouter, endpoints
from .test_stream import BODY, body_msg, headers_msg, set_headers

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER = f"00-{CALLER_TRACE}-b7ad6b7169203331-01"


class FactsRouter(FakeRouter):
    """Keeps the HttpFacts each request was routed with (the trace context the record will carry)."""

    facts: list[HttpFacts]

    async def route_async(self, *args: object, **kwargs: object) -> FakeRouted:
        http = kwargs.get("http")
        assert isinstance(http, HttpFacts)
        self.facts = [*getattr(self, "facts", []), http]
        return await super().route_async(*args, **kwargs)  # type: ignore[arg-type]

    def route_without_body(self, *args: object, **kwargs: object) -> FakeRouted:
        http = kwargs.get("http")
        assert isinstance(http, HttpFacts)
        self.facts = [*getattr(self, "facts", []), http]
        return super().route_without_body(*args, **kwargs)  # type: ignore[arg-type]


def traced() -> StreamConfig:
    return StreamConfig(tracing=Tracing(SimpleSpanProcessor(InMemorySpanExporter()), "t", "epp"))


def removed_headers(common: pb.CommonResponse) -> list[str]:
    return list(common.header_mutation.remove_headers)


def assert_child_of_the_pick(router: FactsRouter, upstream: dict[str, str]) -> None:
    [http] = router.facts
    assert http.trace is not None
    assert upstream["traceparent"] == f"00-{CALLER_TRACE}-{http.trace.span_id:016x}-01"
    assert http.trace.parent_span_id == 0xB7AD6B7169203331


async def test_buffered_pick_sets_the_traceparent_and_forwards_tracestate() -> None:
    router = FactsRouter(endpoints(8001))
    stream = RequestStream(router, POOL, traced())
    await stream.handle(headers_msg(traceparent=CALLER, tracestate="v=1"))
    [answer] = await stream.handle(body_msg(BODY))
    upstream = set_headers(answer.request_body.response)
    assert_child_of_the_pick(router, upstream)
    assert upstream["tracestate"] == "v=1"
    assert upstream["x-gateway-destination-endpoint"] == "10.0.0.1:8001"


async def test_streamed_pick_sets_the_traceparent_on_the_deferred_headers_answer() -> None:
    router = FactsRouter(endpoints(8001))
    stream = RequestStream(router, POOL, traced())
    assert await stream.handle(headers_msg(streamed=True, traceparent=CALLER)) == []
    head, *_ = await stream.handle(body_msg(BODY))
    assert_child_of_the_pick(router, set_headers(head.request_headers.response))
    assert removed_headers(head.request_headers.response) == ["tracestate"]


async def test_headers_only_pick_sets_the_traceparent() -> None:
    router = FactsRouter(endpoints(8001))
    stream = RequestStream(router, POOL, traced())
    [answer] = await stream.handle(headers_msg(end_of_stream=True, traceparent=CALLER))
    assert_child_of_the_pick(router, set_headers(answer.request_headers.response))


async def test_an_invalid_traceparent_starts_a_trace_and_drops_the_stale_tracestate() -> None:
    router = FactsRouter(endpoints(8001))
    stream = RequestStream(router, POOL, traced())
    await stream.handle(headers_msg(traceparent="00-bogus", tracestate="v=1"))
    [answer] = await stream.handle(body_msg(BODY))
    [http] = router.facts
    assert http.trace is not None and http.trace.parent_span_id is None
    assert (
        set_headers(answer.request_body.response)["traceparent"].split("-")[1]
        == f"{http.trace.trace_id:032x}"
    )
    assert removed_headers(answer.request_body.response) == ["tracestate"]


async def test_with_tracing_off_the_pick_leaves_trace_headers_alone() -> None:
    router = FactsRouter(endpoints(8001))
    stream = RequestStream(router, POOL, StreamConfig())
    await stream.handle(headers_msg(traceparent=CALLER, tracestate="v=1"))
    [answer] = await stream.handle(body_msg(BODY))
    common = answer.request_body.response
    assert set(set_headers(common)) == {"x-gateway-destination-endpoint"}  # body unchanged: not sent back
    assert removed_headers(common) == []
    assert router.facts[0].trace is None
