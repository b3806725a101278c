"""Traces through `inferpool serve --otlp-traces-endpoint`: the openai SDK sends a traceparent, the
model server receives one of the same trace whose parent is the gateway's request span, and a
real OTLP/gRPC receiver on loopback decodes the gateway's spans. Budget: 20 s on a 2-core box."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import openai
import orjson

from e2e.otlp_receiver import OtlpReceiver, ReceivedSpan
from e2e.replica import Replica

from .conftest import INFERPOOL, free_port, gateway_manifests

POOL = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: pool}
spec:
  selector: {app: replica}
  targetPortNumber: 8000
  extensionRef: {name: pool-epp}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: base}
spec:
  modelName: base
  criticality: Critical
  poolRef: {name: pool}
"""
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
UNSAMPLED_TRACE = "11112222333344445555666677778888"
REFUSED_TRACE = "9999aaaabbbbccccddddeeeeffff0000"
SERVER, INTERNAL, ERROR = 2, 1, 2  # OTLP SpanKind and StatusCode values
CHILDREN = ["gateway.admission", "gateway.scheduling", "gateway.dispatch", "gateway.response"]


def traceparent(trace_id: str, span_id: str = CALLER_SPAN, flags: str = "01") -> str:
    return f"00-{trace_id}-{span_id}-{flags}"


def upstream_trace(
    replicas: list[Replica], trace_id: str | None = None
) -> tuple[Replica, dict[str, str], list[str]]:
    """The replica that served the (only) request of `trace_id` (None: of a trace the gateway
    began), that request's headers and its traceparent's fields."""
    known = {CALLER_TRACE, UNSAMPLED_TRACE, REFUSED_TRACE}
    for replica in replicas:
        for headers in replica.headers:
            fields = headers["traceparent"].split("-")
            if fields[1] == trace_id or (trace_id is None and fields[1] not in known):
                return replica, headers, fields
    raise AssertionError(f"no model server request of trace {trace_id}")


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    names = [s.name for s in spans]
    assert len(names) == len(set(names)), names
    return {s.name: s for s in spans}


async def wait_ready(admin: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            try:
                async with session.get(f"{admin}/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError("gateway never became ready")


async def test_serve_continues_the_trace_to_the_model_server_and_exports_its_spans(
    spawn,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    receiver = OtlpReceiver()
    await receiver.start()
    replicas = [Replica("r0"), Replica("r1")]
    for replica in replicas:
        await replica.start()
    gateway = None
    try:
        (tmp_path / "gw.yaml").write_text(gateway_manifests(POOL, free_port()))
        endpoints = [
            {"address": "127.0.0.1", "port": r.port, "name": r.name, "labels": {"app": "replica"}}
            for r in replicas
        ]
        (tmp_path / "endpoints.yaml").write_text(orjson.dumps({"endpoints": endpoints}).decode())
        gateway = spawn(
            [INFERPOOL, "serve", "--no-auth", "-f", str(tmp_path / "gw.yaml"),
             "--endpoints", str(tmp_path / "endpoints.yaml"), "--admin-port", str(free_port()),
             "--no-access-log", "--otlp-traces-endpoint", receiver.endpoint],
            env={"OTEL_BSP_SCHEDULE_DELAY": "50"},  # the SDK's batch delay (5 s by default)
        )  # fmt: skip
        # The replicas and the receiver answer on this event loop: never block it while waiting.
        url = (await asyncio.to_thread(gateway.wait_for_line, r"^gateway\s+(http://\S+)", 60)).group(1)
        admin = (await asyncio.to_thread(gateway.wait_for_line, r"^admin\s+(http://\S+)", 60)).group(1)
        assert (await asyncio.to_thread(gateway.wait_for_line, r"^traces\s+OTLP/gRPC to \S+", 5)) is not None
        await wait_ready(admin)

        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", timeout=30, max_retries=0)
        # Not sampled by the caller: still propagated (flags 00), never exported.
        await client.completions.create(
            model="base",
            prompt="quiet",
            max_tokens=3,
            extra_headers={"traceparent": traceparent(UNSAMPLED_TRACE, flags="00")},
        )
        stream = await client.chat.completions.create(
            model="base",
            messages=[{"role": "user", "content": "traced"}],
            max_tokens=3,
            stream=True,
            extra_headers={"traceparent": traceparent(CALLER_TRACE), "tracestate": "vendor=opaque"},
        )
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "a b c"
        await client.completions.create(model="base", prompt="no caller trace", max_tokens=3)
        try:
            await client.completions.create(
                model="nope", prompt="x", extra_headers={"traceparent": traceparent(REFUSED_TRACE)}
            )
            raise AssertionError("a model no InferenceModel names must be refused")
        except openai.NotFoundError:
            pass

        # 1. The caller's trace, continued: the model server's parent is the gateway's request span.
        served_by, headers, fields = upstream_trace(replicas, CALLER_TRACE)
        assert fields[3] == "01" and fields[2] != CALLER_SPAN
        assert headers["tracestate"] == "vendor=opaque"
        spans = by_name(await receiver.wait_for_trace(CALLER_TRACE, 1 + len(CHILDREN)))
        assert sorted(spans) == sorted(["gateway.request", *CHILDREN])
        request = spans["gateway.request"]
        assert request.span_id == fields[2]
        assert request.parent_span_id == CALLER_SPAN
        assert request.kind == SERVER and request.service == "inferpool-gateway"
        assert request.trace_state == "vendor=opaque"
        attrs = request.attributes
        assert attrs["gen_ai.request.model"] == "base"
        assert attrs["inferpool.pool"] == "default/pool"
        assert attrs["inferpool.endpoint"] == served_by.name
        assert attrs["inferpool.stream"] is True
        assert attrs["http.response.status_code"] == 200
        assert attrs["url.path"] == "/v1/chat/completions"
        assert attrs["inferpool.listener"] == "default/gw/http"
        assert attrs["gen_ai.usage.output_tokens"] == 3
        previous_end = request.start_ns
        for name in CHILDREN:  # in order, one after the other, inside the request span
            child = spans[name]
            assert child.parent_span_id == request.span_id and child.kind == INTERNAL
            assert previous_end <= child.start_ns <= child.end_ns <= request.end_ns, name
            previous_end = child.end_ns
        scheduling = spans["gateway.scheduling"].attributes
        assert scheduling["inferpool.pick"] == served_by.name
        assert scheduling["inferpool.pick.address"] == served_by.hostport
        assert sorted(scheduling["inferpool.candidates"]) == ["r0", "r1"]
        assert len(scheduling["inferpool.candidate_scores"]) == 2
        assert scheduling["inferpool.candidate_scores"][0] >= scheduling["inferpool.candidate_scores"][1]
        assert spans["gateway.dispatch"].attributes["server.port"] == served_by.port
        response = spans["gateway.response"]
        (first_token,) = [t for name, t in response.events if name == "first_token"]
        assert response.start_ns <= first_token <= response.end_ns

        # 2. No traceparent from the caller: the gateway begins the trace.
        _, headers, fields = upstream_trace(replicas)
        assert "tracestate" not in headers
        spans = by_name(await receiver.wait_for_trace(fields[1], 1 + len(CHILDREN)))
        assert spans["gateway.request"].span_id == fields[2]
        assert spans["gateway.request"].parent_span_id == ""
        assert spans["gateway.request"].attributes["url.path"] == "/v1/completions"

        # 3. Refused in the core: the request span and the step that refused it carry the error.
        spans = by_name(await receiver.wait_for_trace(REFUSED_TRACE, 2))
        assert sorted(spans) == ["gateway.admission", "gateway.request"]
        assert spans["gateway.request"].parent_span_id == CALLER_SPAN
        assert spans["gateway.request"].attributes["http.response.status_code"] == 404
        assert spans["gateway.request"].status_code == ERROR
        assert spans["gateway.admission"].status_code == ERROR

        # 4. The unsampled request went upstream with flags 00 and the gateway's span as parent; its
        # spans were never exported (batches leave in order, and later requests' spans are here).
        _, _, fields = upstream_trace(replicas, UNSAMPLED_TRACE)
        assert fields[3] == "00" and fields[2] != CALLER_SPAN
        assert receiver.of_trace(UNSAMPLED_TRACE) == []

        # The collector stays up until the gateway has stopped: stopping sends what is still batched.
        assert await asyncio.to_thread(gateway.interrupt, 30) == 0
    finally:
        if gateway is not None:
            await asyncio.to_thread(gateway.interrupt, 30)
        for replica in replicas:
            await replica.stop()
        await receiver.stop()
