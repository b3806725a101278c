"""The Endpoint Picker Protocol state machine, message by message."""

from __future__ import annotations

import orjson
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import struct_pb2

from inferpool.errors import InferenceError
from inferpool.extproc import protocol
from inferpool.extproc.stream import RequestStream, ResponseSampler, StreamConfig

from .fakes import POOL, FakeRouter, endpoints

MODE = processing_mode_pb2.ProcessingMode


def headers_msg(end_of_stream: bool = False, streamed: bool = False, **extra: str) -> pb.ProcessingRequest:
    values = {":method": "POST", ":path": "/v1/completions", "content-type": "application/json", **extra}
    msg = pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(
            headers=base_pb2.HeaderMap(
                headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in values.items()]
            ),
            end_of_stream=end_of_stream,
        )
    )
    mode = MODE.FULL_DUPLEX_STREAMED if streamed else MODE.BUFFERED
    msg.protocol_config.request_body_mode = mode
    msg.protocol_config.response_body_mode = mode
    return msg


def body_msg(data: bytes, end: bool = True) -> pb.ProcessingRequest:
    return pb.ProcessingRequest(request_body=pb.HttpBody(body=data, end_of_stream=end))


def set_headers(common: pb.CommonResponse) -> dict[str, str]:
    return {h.header.key: h.header.raw_value.decode() for h in common.header_mutation.set_headers}


BODY = orjson.dumps({"model": "food-review", "prompt": "hi"})


async def test_buffered_answers_headers_then_one_body_with_the_pick() -> None:
    router = FakeRouter(endpoints(8001), rewrite=b'{"model":"food-review-1"}')
    stream = RequestStream(router, POOL, StreamConfig())
    [first] = await stream.handle(headers_msg())
    assert first.WhichOneof("response") == "request_headers"
    assert not first.request_headers.response.header_mutation.set_headers
    [answer] = await stream.handle(body_msg(BODY))
    common = answer.request_body.response
    assert set_headers(common) == {
        "x-gateway-destination-endpoint": "10.0.0.1:8001",
        "content-length": str(len(b'{"model":"food-review-1"}')),
    }
    assert common.clear_route_cache
    assert common.body_mutation.body == b'{"model":"food-review-1"}'
    lb = answer.dynamic_metadata.fields["envoy.lb"].struct_value
    assert lb.fields["x-gateway-destination-endpoint"].string_value == "10.0.0.1:8001"
    assert router.calls[0][0] == "/v1/completions" and router.calls[0][2] == BODY
    assert router.routed[0].events == [("dispatched", "10.0.0.1:8001")]


async def test_buffered_body_the_core_left_unchanged_is_not_sent_back() -> None:
    router = FakeRouter(endpoints(8001))  # no rewrite: the core hands back the very bytes it got
    stream = RequestStream(router, POOL, StreamConfig())
    await stream.handle(headers_msg())
    [answer] = await stream.handle(body_msg(BODY))
    common = answer.request_body.response
    assert set_headers(common) == {"x-gateway-destination-endpoint": "10.0.0.1:8001"}  # no content-length
    assert not common.HasField("body_mutation") and common.clear_route_cache


async def test_streamed_defers_headers_and_rechunks_a_large_body() -> None:
    big = b'{"model":"m","prompt":"' + b"x" * 150_000 + b'"}'
    router = FakeRouter(endpoints(8001))
    stream = RequestStream(router, POOL, StreamConfig())
    assert await stream.handle(headers_msg(streamed=True)) == []
    assert await stream.handle(body_msg(big[:70_000], end=False)) == []
    answers = await stream.handle(body_msg(big[70_000:], end=True))
    head, *bodies = answers
    assert head.WhichOneof("response") == "request_headers"
    assert set_headers(head.request_headers.response)["content-length"] == str(len(big))
    assert head.request_headers.response.clear_route_cache
    assert len(bodies) == 3
    pieces = [b.request_body.response.body_mutation.streamed_response for b in bodies]
    assert all(len(p.body) < 62_001 for p in pieces)
    assert b"".join(p.body for p in pieces) == big
    assert [p.end_of_stream for p in pieces] == [False, False, True]


async def test_fallback_list_is_ordered_and_comma_separated() -> None:
    router = FakeRouter(endpoints(8001, 8002, 8003))
    stream = RequestStream(router, POOL, StreamConfig(fallback_endpoints=2))
    await stream.handle(headers_msg())
    [answer] = await stream.handle(body_msg(BODY))
    assert (
        set_headers(answer.request_body.response)[protocol.DESTINATION_HEADER]
        == "10.0.0.1:8001,10.0.0.1:8002"
    )


async def test_subset_hint_is_passed_and_an_empty_match_is_503() -> None:
    router = FakeRouter(endpoints(8001, 8002))
    msg = headers_msg()
    hint = struct_pb2.Struct()
    hint.update({protocol.SUBSET_KEY: ["10.0.0.1:8002"]})
    msg.metadata_context.filter_metadata[protocol.SUBSET_NAMESPACE].CopyFrom(hint)
    stream = RequestStream(router, POOL, StreamConfig())
    await stream.handle(msg)
    [answer] = await stream.handle(body_msg(BODY))
    assert router.calls[0][3] == frozenset({"10.0.0.1:8002"})
    assert set_headers(answer.request_body.response)[protocol.DESTINATION_HEADER] == "10.0.0.1:8002"

    hint.update({protocol.SUBSET_KEY: ["10.9.9.9:1"]})
    msg.metadata_context.filter_metadata[protocol.SUBSET_NAMESPACE].CopyFrom(hint)
    stream = RequestStream(router, POOL, StreamConfig())
    await stream.handle(msg)
    [answer] = await stream.handle(body_msg(BODY))
    assert answer.immediate_response.status.code == 503
    assert stream.done


async def test_errors_become_immediate_responses_with_json_bodies() -> None:
    for status in (400, 404, 429, 503):
        router = FakeRouter(endpoints(8001), error=InferenceError(status, f"nope {status}"))
        stream = RequestStream(router, POOL, StreamConfig())
        await stream.handle(headers_msg())
        [answer] = await stream.handle(body_msg(BODY))
        immediate = answer.immediate_response
        assert immediate.status.code == status
        assert orjson.loads(immediate.body)["error"]["code"] == status
        assert set_headers(pb.CommonResponse(header_mutation=immediate.headers))["content-type"] == (
            "application/json"
        )


async def test_an_unexpected_exception_is_a_500_not_a_dead_stream() -> None:
    class Broken(FakeRouter):
        async def route_async(self, *args: object, **kwargs: object):  # type: ignore[override]
            raise RuntimeError("boom")

    stream = RequestStream(Broken(endpoints(8001)), POOL, StreamConfig())
    await stream.handle(headers_msg())
    [answer] = await stream.handle(body_msg(BODY))
    assert answer.immediate_response.status.code == 500


async def test_response_is_passed_to_the_core_and_finishes_once() -> None:
    router = FakeRouter(endpoints(8001, 8002))
    stream = RequestStream(router, POOL, StreamConfig(fallback_endpoints=2))
    await stream.handle(headers_msg(streamed=True))
    await stream.handle(body_msg(BODY))
    resp = pb.ProcessingRequest(
        response_headers=pb.HttpHeaders(
            headers=base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=":status", raw_value=b"200")])
        )
    )
    served = struct_pb2.Struct()
    served.update({protocol.SERVED_KEY: "10.0.0.1:8002"})
    resp.metadata_context.filter_metadata[protocol.DESTINATION_NAMESPACE].CopyFrom(served)
    [h] = await stream.handle(resp)
    assert h.WhichOneof("response") == "response_headers"
    [b1] = await stream.handle(pb.ProcessingRequest(response_body=pb.HttpBody(body=b"data: {}\n\n")))
    assert b1.response_body.response.body_mutation.streamed_response.body == b"data: {}\n\n"
    [b2] = await stream.handle(pb.ProcessingRequest(response_body=pb.HttpBody(body=b"", end_of_stream=True)))
    assert b2.response_body.response.body_mutation.streamed_response.end_of_stream
    stream.close()
    assert router.routed[0].events == [
        ("dispatched", "10.0.0.1:8001"),
        ("dispatched", "10.0.0.1:8002"),
        ("started", 200),
        ("data", b"data: {}\n\n"),
        ("finish", (200, None)),
    ]


async def test_body_chunks_are_answered_at_once_from_the_streams_own_state() -> None:
    """What the threaded server answers without the event loop: a streamed request body's
    chunks before the last, and unscreened response chunks before the last, accounted as
    `handle` accounts them; everything else is left to `handle` (None)."""
    router = FakeRouter(endpoints(8001))
    stream = RequestStream(router, POOL, StreamConfig())
    assert stream.answer_at_once(headers_msg(streamed=True)) is None  # the modes, the headers
    await stream.handle(headers_msg(streamed=True))
    assert stream.answer_at_once(body_msg(BODY[:5], end=False)) == []
    assert stream.answer_at_once(body_msg(BODY[5:], end=True)) is None  # the last: the pick
    await stream.handle(body_msg(BODY[5:], end=True))
    assert router.calls[0][2] == BODY  # the chunk kept at once is part of the body picked on
    status = base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=":status", raw_value=b"200")])
    await stream.handle(pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=status)))
    [echo] = (
        stream.answer_at_once(pb.ProcessingRequest(response_body=pb.HttpBody(body=b"data: {}\n\n"))) or []
    )
    assert echo.response_body.response.body_mutation.streamed_response.body == b"data: {}\n\n"
    last = pb.ProcessingRequest(response_body=pb.HttpBody(body=b"", end_of_stream=True))
    assert stream.answer_at_once(last) is None  # the end: the request finishes on the loop
    await stream.handle(last)
    assert router.routed[0].events == [
        ("dispatched", "10.0.0.1:8001"),
        ("started", 200),
        ("data", b"data: {}\n\n"),
        ("finish", (200, None)),
    ]


async def test_scheduler_response_headers_are_set_on_the_response() -> None:
    """The session token of session-affinity-scorer: a header mutation on the response headers."""
    router = FakeRouter(endpoints(8001), answer_headers={"x-session-token": "ZGVmYXVsdC9lODAwMQ=="})
    stream = RequestStream(router, POOL, StreamConfig())
    await stream.handle(headers_msg())
    await stream.handle(body_msg(BODY))
    status = base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=":status", raw_value=b"200")])
    [h] = await stream.handle(pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=status)))
    assert set_headers(h.response_headers.response) == {"x-session-token": "ZGVmYXVsdC9lODAwMQ=="}
    plain = RequestStream(FakeRouter(endpoints(8001)), POOL, StreamConfig())
    await plain.handle(headers_msg())
    await plain.handle(body_msg(BODY))
    [h] = await plain.handle(pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=status)))
    assert not h.response_headers.response.HasField("header_mutation")


async def test_an_answer_a_scheduler_plugin_needs_is_asked_for_whatever_the_sampler_says() -> None:
    """Sampled accounting (response body NONE): stored-response-filter must read a /v1/responses
    answer's id, so the picker asks Envoy for that answer; others stay unread."""
    status = base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=":status", raw_value=b"200")])
    never = StreamConfig(sampler=ResponseSampler(0))
    modes = {}
    for needed in (True, False):
        stream = RequestStream(FakeRouter(endpoints(8001), needs_answer=needed), POOL, never)
        first = headers_msg()
        first.protocol_config.response_body_mode = MODE.NONE
        await stream.handle(first)
        await stream.handle(body_msg(BODY))
        [h] = await stream.handle(pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=status)))
        modes[needed] = h.mode_override.response_body_mode if h.HasField("mode_override") else None
    assert modes == {True: MODE.STREAMED, False: None}


def sampled_headers_msg() -> pb.ProcessingRequest:
    """Request headers as Envoy sends them in the reference (`sampled`) config."""
    first = headers_msg()
    first.protocol_config.response_body_mode = MODE.NONE
    return first


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_an_unsampled_answer_is_left_out_entirely_and_the_request_ends_with_the_stream() -> None:
    """Sampled accounting: a request the sampler passes over tells Envoy, in its answer to the
    request headers, to send no response headers; the override repeats the configured body
    modes (it replaces the whole mode), and closing the stream ends it with status 0 (unseen)."""
    router = FakeRouter(endpoints(8001))
    stream = RequestStream(router, POOL, StreamConfig(sampler=ResponseSampler(0)))
    [first] = await stream.handle(sampled_headers_msg())
    mode = first.mode_override
    assert (mode.request_header_mode, mode.request_body_mode) == (MODE.SEND, MODE.BUFFERED)
    assert (mode.response_header_mode, mode.response_body_mode) == (MODE.SKIP, MODE.NONE)
    [pick] = await stream.handle(body_msg(BODY))
    assert set_headers(pick.request_body.response) == {protocol.DESTINATION_HEADER: "10.0.0.1:8001"}
    stream.close()
    assert router.routed[0].events == [("dispatched", "10.0.0.1:8001"), ("finish", (0, None))]


async def test_a_sampled_answer_keeps_its_headers_and_is_read_without_asking_the_sampler_twice() -> None:
    clock = Clock()
    sampler = ResponseSampler(1.0, clock)  # one answer a second, and the clock stands still
    status = base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=":status", raw_value=b"200")])
    answers = []
    for _ in range(2):
        router = FakeRouter(endpoints(8001))
        stream = RequestStream(router, POOL, StreamConfig(sampler=sampler))
        [first] = await stream.handle(sampled_headers_msg())
        answers.append(first.HasField("mode_override"))
        await stream.handle(body_msg(BODY))
        if not answers[-1]:
            [h] = await stream.handle(pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=status)))
            assert h.mode_override.response_body_mode == MODE.STREAMED  # the token taken at the headers
        stream.close()
    assert answers == [False, True]  # the first took the one token, the second skips its answer


async def test_answers_are_read_whenever_something_needs_every_one() -> None:
    """Every status on request, a fallback list, a plugin that reads answers or sets their headers,
    P/D, Envoy sending bodies anyway: no request skips its answer headers."""
    never = ResponseSampler(0)
    cases = {
        "every status": (FakeRouter(endpoints(8001)), StreamConfig(sampler=never, every_status=True)),
        "fallback list": (FakeRouter(endpoints(8001, 8002)), StreamConfig(2, never)),
        "plugin reads answers": (FakeRouter(endpoints(8001), needs_answer=True), StreamConfig(sampler=never)),
        "session token": (
            FakeRouter(endpoints(8001), answer_headers={"x-session-token": "t"}),
            StreamConfig(sampler=never),
        ),
        "P/D": (FakeRouter(endpoints(8001), prefill=endpoints(8002)), StreamConfig(sampler=never)),
    }
    for name, (router, config) in cases.items():
        stream = RequestStream(router, POOL, config)
        [first] = await stream.handle(sampled_headers_msg())
        assert not first.HasField("mode_override"), name
    bodies_anyway = RequestStream(FakeRouter(endpoints(8001)), POOL, StreamConfig(sampler=never))
    [first] = await bodies_anyway.handle(headers_msg())  # response body BUFFERED in Envoy's config
    assert not first.HasField("mode_override")


async def test_a_stream_closed_mid_response_still_releases_the_request() -> None:
    router = FakeRouter(endpoints(8001))
    stream = RequestStream(router, POOL, StreamConfig())
    await stream.handle(headers_msg())
    await stream.handle(body_msg(BODY))
    stream.close()
    stream.close()
    assert router.routed[0].events[-1] == ("finish", (499, "stream closed before the response"))
    assert sum(1 for e in router.routed[0].events if e[0] == "finish") == 1


async def test_headers_only_request_is_picked_on_headers() -> None:
    router = FakeRouter(endpoints(8001))
    stream = RequestStream(router, POOL, StreamConfig())
    [answer] = await stream.handle(headers_msg(end_of_stream=True, **{":method": "GET"}))
    got = set_headers(answer.request_headers.response)
    assert got == {protocol.DESTINATION_HEADER: "10.0.0.1:8001"}


def test_chunks_cover_the_body_exactly() -> None:
    for size in (0, 1, 61_999, 62_000, 62_001, 200_000):
        data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
        pieces = list(protocol.chunks(data))
        assert b"".join(pieces) == data
        assert all(len(p) <= protocol.BODY_CHUNK_LIMIT for p in pieces)
        assert len(pieces) == max(1, -(-size // protocol.BODY_CHUNK_LIMIT))


def test_answers_that_depend_only_on_the_destination_are_built_once() -> None:
    """Shared by every stream: the same object per destination (grpc serializes it on write),
    built fresh when the body or upstream headers make it the request's own."""
    answers = protocol.Answers()
    first = answers.picked_buffered_body("10.0.0.1:8001", None)
    assert answers.picked_buffered_body("10.0.0.1:8001", None) is first
    assert first == protocol.picked_buffered_body("10.0.0.1:8001", None)
    assert answers.picked_buffered_body("10.0.0.1:8002", None) is not first
    rewritten = answers.picked_buffered_body("10.0.0.1:8001", b'{"model":"m"}')
    assert rewritten is not first and rewritten.request_body.response.body_mutation.body == b'{"model":"m"}'
    traced = answers.picked_buffered_body("10.0.0.1:8001", None, {"traceparent": "00-a-b-01"})
    assert traced is not first and "traceparent" in set_headers(traced.request_body.response)
    skip = answers.continue_without_answer(MODE.BUFFERED)
    assert answers.continue_without_answer(MODE.BUFFERED) is skip
    assert skip == protocol.continue_without_answer(MODE.BUFFERED)
    for port in range(protocol.Answers._LIMIT + 1):  # bounded: it starts over when full
        answers.picked_buffered_body(f"10.0.0.2:{port}", None)
    assert len(answers._picks) <= protocol.Answers._LIMIT


async def test_a_refused_request_gives_its_sample_token_back() -> None:
    """The sampler is asked at the request headers; a request the core then refuses (shed, 429)
    had no answer to read, so the next request gets the token."""
    sampler = ResponseSampler(1.0, Clock())  # one token, and the clock stands still
    shed = FakeRouter(endpoints(8001), error=InferenceError(429, "pool saturated"))
    refused = RequestStream(shed, POOL, StreamConfig(sampler=sampler))
    [first] = await refused.handle(sampled_headers_msg())
    assert not first.HasField("mode_override")  # sampled: it took the one token
    [answer] = await refused.handle(body_msg(BODY))
    assert answer.immediate_response.status.code == 429
    nxt = RequestStream(FakeRouter(endpoints(8001)), POOL, StreamConfig(sampler=sampler))
    [first] = await nxt.handle(sampled_headers_msg())
    assert not first.HasField("mode_override")  # the token came back: sampled again
    after = RequestStream(FakeRouter(endpoints(8001)), POOL, StreamConfig(sampler=sampler))
    [first] = await after.handle(sampled_headers_msg())
    assert first.mode_override.response_header_mode == MODE.SKIP  # and now it is spent


async def test_response_headers_that_come_anyway_are_read() -> None:
    """An Envoy that does not allow mode overrides sends the headers it was asked not to: the
    request then ends with the status they carry, not as unseen."""
    router = FakeRouter(endpoints(8001))
    stream = RequestStream(router, POOL, StreamConfig(sampler=ResponseSampler(0)))
    [first] = await stream.handle(sampled_headers_msg())
    assert first.mode_override.response_header_mode == MODE.SKIP
    await stream.handle(body_msg(BODY))
    status = base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=":status", raw_value=b"503")])
    await stream.handle(pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=status)))
    stream.close()
    assert router.routed[0].events[-1] == ("finish", (503, None))
