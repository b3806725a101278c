"""The EPP with Anthropic /v1/messages and the Responses API: routed by model, prompts and answers screened."""

from __future__ import annotations

import orjson
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from free_ports import free_port
from inferpool.api.guard import GuardPolicy, GuardWebhook
from inferpool.extproc.stream import RequestStream, StreamConfig
from inferpool.guard.attach import GuardSet

from .fakes import POOL, FakeRouter, endpoints
from .test_stream import body_msg, headers_msg

POLICY = GuardPolicy.model_validate(
    {
        "apiVersion": "inferpool.io/v1alpha1",
        "kind": "GuardPolicy",
        "metadata": {"name": "screening", "namespace": "default"},
        "spec": {
            "targetRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "pool"}],
            "checks": [{"type": "Secrets", "action": "Block"}, {"type": "PII", "action": "Redact"}],
        },
    }
)
MESSAGES = {"model": "food-review", "max_tokens": 8, "messages": [{"role": "user", "content": "hello"}]}


def _stream(router: FakeRouter) -> RequestStream:
    guards = GuardSet([POLICY])
    return RequestStream(router, POOL, StreamConfig(), guards=lambda: guards)


async def test_a_secret_in_an_anthropic_system_prompt_is_refused_before_routing() -> None:
    router = FakeRouter(endpoints(8001))
    stream = _stream(router)
    await stream.handle(headers_msg(**{":path": "/v1/messages"}))
    body = {**MESSAGES, "system": [{"type": "text", "text": "key AKIAIOSFODNN7EXAMPLE"}]}
    [answer] = await stream.handle(body_msg(orjson.dumps(body)))
    assert answer.immediate_response.status.code == 400
    assert orjson.loads(answer.immediate_response.body)["error"]["type"] == "content_filter"
    assert router.calls == []
    assert [err.status for _, err in router.refused] == [400]


async def test_a_clean_messages_request_is_routed_and_its_streamed_answer_redacted() -> None:
    router = FakeRouter(endpoints(8001))
    stream = _stream(router)
    await stream.handle(headers_msg(streamed=True, **{":path": "/v1/messages"}))
    await stream.handle(body_msg(orjson.dumps(MESSAGES)))
    assert router.calls[0][0] == "/v1/messages"
    head = pb.ProcessingRequest(
        response_headers=pb.HttpHeaders(
            headers=base_pb2.HeaderMap(
                headers=[
                    base_pb2.HeaderValue(key=":status", raw_value=b"200"),
                    base_pb2.HeaderValue(key="content-type", raw_value=b"text/event-stream"),
                ]
            )
        )
    )
    await stream.handle(head)
    delta = {
        "type": "content_block_delta",
        "delta": {"type": "text_delta", "text": "mail a@b.io now"},
        "index": 0,
    }
    event = b"event: content_block_delta\ndata: " + orjson.dumps(delta) + b"\n\n"
    chunk = pb.ProcessingRequest(response_body=pb.HttpBody(body=event))
    assert stream.answer_at_once(chunk) is None  # a screened answer's chunks go to its screener
    [out] = await stream.handle(chunk)
    sent = out.response_body.response.body_mutation.streamed_response.body
    assert sent.startswith(b"event: content_block_delta\ndata: ")
    assert b"a@b.io" not in sent and b"[REDACTED:email]" in sent
    stream.close()


async def test_a_screening_service_outage_is_a_400_that_names_no_address() -> None:
    """The same body as the built-in gateway's (tests/integration/test_security_gateway.py)."""
    port = free_port()  # nothing listens there
    outage = POLICY.model_copy(deep=True)
    outage.spec.webhook = GuardWebhook(url=f"http://127.0.0.1:{port}/screen", timeout_ms=500)
    guards = GuardSet([outage])
    router = FakeRouter(endpoints(8001))
    stream = RequestStream(router, POOL, StreamConfig(), guards=lambda: guards)
    await stream.handle(headers_msg(**{":path": "/v1/messages"}))
    [answer] = await stream.handle(body_msg(orjson.dumps(MESSAGES)))
    assert answer.immediate_response.status.code == 400
    error = orjson.loads(answer.immediate_response.body)["error"]
    assert (error["type"], error["param"]) == ("content_filter", "prompt")
    assert error["message"] == (
        "prompt blocked: the screening service could not be reached and the policy fails closed"
    )
    assert router.calls == []


def _response_headers(content_type: str) -> pb.ProcessingRequest:
    values = {":status": "200", "content-type": content_type}
    return pb.ProcessingRequest(
        response_headers=pb.HttpHeaders(
            headers=base_pb2.HeaderMap(
                headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in values.items()]
            )
        )
    )


async def test_a_stored_answer_fetched_by_id_is_screened_as_the_answer_was() -> None:
    """GET /v1/responses/{id} has no body, so no model to pick a policy by; the stored answer's
    own `model` picks it (as in the built-in gateway: tests/integration/test_security_gateway.py).
    Buffered answers (Envoy's BUFFERED response mode here): a block is the 400."""
    stored = {
        "id": "resp_1",
        "object": "response",
        "model": "food-review",
        "output": [
            {"type": "message", "content": [{"type": "output_text", "text": "key AKIAIOSFODNN7EXAMPLE"}]}
        ],
    }
    for method, path in (("GET", "/v1/responses/resp_1"), ("POST", "/v1/responses/resp_1/cancel")):
        router = FakeRouter(endpoints(8001))
        stream = _stream(router)
        [picked] = await stream.handle(headers_msg(end_of_stream=True, **{":method": method, ":path": path}))
        assert picked.HasField("request_headers") and router.calls[0][0] == path
        await stream.handle(_response_headers("application/json"))
        [answer] = await stream.handle(
            pb.ProcessingRequest(response_body=pb.HttpBody(body=orjson.dumps(stored), end_of_stream=True))
        )
        assert answer.immediate_response.status.code == 400
        error = orjson.loads(answer.immediate_response.body)["error"]
        assert (error["type"], error["param"]) == ("content_filter", "response")
        stream.close()
    # a streamed fetch: the policies for any model, event by event (an address redacted)
    router = FakeRouter(endpoints(8001))
    stream = _stream(router)
    await stream.handle(
        headers_msg(end_of_stream=True, **{":method": "GET", ":path": "/v1/responses/resp_1?stream=true"})
    )
    await stream.handle(_response_headers("text/event-stream"))
    delta = {"type": "response.output_text.delta", "delta": "mail a@b.io now"}
    event = b"event: response.output_text.delta\ndata: " + orjson.dumps(delta) + b"\n\n"
    [out] = await stream.handle(pb.ProcessingRequest(response_body=pb.HttpBody(body=event)))
    sent = out.response_body.response.body_mutation.body
    assert b"a@b.io" not in sent and b"[REDACTED:email]" in sent
    stream.close()


async def test_a_policy_that_screens_answers_asks_for_them_uncompressed() -> None:
    """A compressed answer passes unscreened: the pick asks the model server for none."""
    router = FakeRouter(endpoints(8001))
    stream = _stream(router)  # POLICY redacts PII in answers
    await stream.handle(headers_msg(**{":path": "/v1/messages", "accept-encoding": "gzip"}))
    [picked] = await stream.handle(body_msg(orjson.dumps(MESSAGES)))
    mutation = picked.request_body.response.header_mutation
    assert {h.header.key: h.header.raw_value for h in mutation.set_headers}["accept-encoding"] == b"identity"
    stream.close()
