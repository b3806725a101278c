"""Building and reading ext_proc messages for the Endpoint Picker Protocol.

Pure functions over the `xds-protos` stubs, so the stream state machine stays free of
protobuf plumbing and each rule of the protocol is testable on its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2

DESTINATION_HEADER = "x-gateway-destination-endpoint"
DESTINATION_NAMESPACE = "envoy.lb"
SUBSET_NAMESPACE = "envoy.lb.subset_hint"
SUBSET_KEY = "x-gateway-destination-endpoint-subset"
SERVED_KEY = "x-gateway-destination-endpoint-served"
EXT_PROC_ATTRIBUTES = "envoy.filters.http.ext_proc"
# Envoy rejects gRPC messages over its limit; upstream re-chunks bodies below 64 KiB.
BODY_CHUNK_LIMIT = 62_000

FULL_DUPLEX_STREAMED = processing_mode_pb2.ProcessingMode.FULL_DUPLEX_STREAMED
_MODE = processing_mode_pb2.ProcessingMode

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def header_map(headers: base_pb2.HeaderMap) -> dict[str, str]:
    """Header names to values. Envoy sends names lower-cased (the protocol says so) and values as
    `raw_value` bytes (older versions: `value`)."""
    return {
        h.key: h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value for h in headers.headers
    }


def response_facts(headers: base_pb2.HeaderMap) -> tuple[int, str | None, str | None]:
    """(status, content type, content encoding) of a response's headers: all the picker reads."""
    status, content_type, encoding = 200, None, None
    for h in headers.headers:
        if h.key == ":status":
            try:
                status = int(h.raw_value or h.value)
            except ValueError:
                status = 502
        elif h.key == "content-type":
            content_type = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
        elif h.key == "content-encoding":
            encoding = h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
    return status, content_type, encoding


def header_value(headers: base_pb2.HeaderMap, name: str) -> str | None:
    """The value of one (lower-case) header, or None when it is absent."""
    for h in headers.headers:
        if h.key == name:
            return h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
    return None


def subset_hint(request: pb.ProcessingRequest) -> frozenset[str] | None:
    """The proxy's allowed `ip:port`s from filter metadata, or None when no hint was given."""
    namespaces = request.metadata_context.filter_metadata
    if SUBSET_NAMESPACE not in namespaces:
        return None
    fields = namespaces[SUBSET_NAMESPACE].fields
    if SUBSET_KEY not in fields:
        return None
    value = fields[SUBSET_KEY]
    if value.WhichOneof("kind") == "list_value":
        return frozenset(v.string_value for v in value.list_value.values if v.string_value)
    if value.WhichOneof("kind") == "string_value":
        return frozenset(s.strip() for s in value.string_value.split(",") if s.strip())
    return frozenset()


def served_endpoint(request: pb.ProcessingRequest) -> str | None:
    """Which endpoint actually served: the proxy's metadata, else Envoy's `upstream.address`."""
    namespaces = request.metadata_context.filter_metadata
    if DESTINATION_NAMESPACE in namespaces:
        fields = namespaces[DESTINATION_NAMESPACE].fields
        if SERVED_KEY in fields and fields[SERVED_KEY].string_value:
            return fields[SERVED_KEY].string_value
    attributes = request.attributes
    if EXT_PROC_ATTRIBUTES in attributes:
        fields = attributes[EXT_PROC_ATTRIBUTES].fields
        if "upstream.address" in fields and fields["upstream.address"].string_value:
            return fields["upstream.address"].string_value
    return None


def _set_headers(headers: Mapping[str, str | None]) -> pb.HeaderMutation:
    """Set each header to its value; a None value removes the header."""
    return pb.HeaderMutation(
        set_headers=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=k, raw_value=v.encode()), append_action=_OVERWRITE
            )
            for k, v in headers.items()
            if v is not None
        ],
        remove_headers=[k for k, v in headers.items() if v is None],
    )


def destination_metadata(destination: str) -> struct_pb2.Struct:
    """`{"envoy.lb": {"x-gateway-destination-endpoint": destination}}`, same value as the header."""
    meta = struct_pb2.Struct()
    meta.fields[DESTINATION_NAMESPACE].struct_value.fields[DESTINATION_HEADER].string_value = destination
    return meta


def routing_mutation(
    destination: str, body_length: int | None, upstream: Mapping[str, str | None] | None = None
) -> pb.CommonResponse:
    """The common part of the pick: destination header, corrected length, route cache cleared, and
    `upstream` headers for the model server (trace context; None values remove the header)."""
    headers: dict[str, str | None] = {DESTINATION_HEADER: destination}
    if body_length is not None:
        headers["content-length"] = str(body_length)
    if upstream:
        headers.update(upstream)
    return pb.CommonResponse(header_mutation=_set_headers(headers), clear_route_cache=True)


def continue_request_headers() -> pb.ProcessingResponse:
    return pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=pb.CommonResponse()))


def continue_without_answer(request_body_mode: int) -> pb.ProcessingResponse:
    """Continue, and tell Envoy not to send this request's response headers (nor its body).

    A `mode_override` replaces the whole processing mode, so the request body's mode Envoy was
    configured with is repeated; Envoy honours it only in the answer to the request headers.
    """
    answer = continue_request_headers()
    mode = answer.mode_override
    mode.request_header_mode = _MODE.SEND
    mode.request_body_mode = request_body_mode  # type: ignore[assignment]
    mode.response_header_mode = _MODE.SKIP
    mode.response_body_mode = _MODE.NONE
    return answer


def picked_request_headers(
    destination: str, body_length: int | None, upstream: Mapping[str, str | None] | None = None
) -> pb.ProcessingResponse:
    """Streamed mode: the headers answer, sent once the whole body has been read."""
    return pb.ProcessingResponse(
        request_headers=pb.HeadersResponse(response=routing_mutation(destination, body_length, upstream)),
        dynamic_metadata=destination_metadata(destination),
    )


def picked_buffered_body(
    destination: str, body: bytes | None, upstream: Mapping[str, str | None] | None = None
) -> pb.ProcessingResponse:
    """Buffered mode: one body answer carrying the header mutation and the rewritten body.

    `body` None: the body goes on as the client sent it (Envoy still holds it), so neither it
    nor a new content-length crosses the stream.
    """
    common = routing_mutation(destination, None if body is None else len(body), upstream)
    if body is not None:
        common.body_mutation.body = body
    return pb.ProcessingResponse(
        request_body=pb.BodyResponse(response=common),
        dynamic_metadata=destination_metadata(destination),
    )


class Answers:
    """The answers that depend on nothing but the destination, built once and reused: grpc
    serializes a message when it writes it and nothing here mutates one after, so every stream
    can send the same object (building them took ≈10 µs of protobuf work per request)."""

    _LIMIT = 4096  # destinations remembered (fallback lists combine endpoints); then start over

    def __init__(self) -> None:
        self.continue_headers = continue_request_headers()
        self._without_answer: dict[int, pb.ProcessingResponse] = {}
        self._picks: dict[str, pb.ProcessingResponse] = {}

    def continue_without_answer(self, request_body_mode: int) -> pb.ProcessingResponse:
        answer = self._without_answer.get(request_body_mode)
        if answer is None:
            answer = self._without_answer[request_body_mode] = continue_without_answer(request_body_mode)
        return answer

    def picked_buffered_body(
        self, destination: str, body: bytes | None, upstream: Mapping[str, str | None] | None = None
    ) -> pb.ProcessingResponse:
        if body is not None or upstream:  # per request: built each time
            return picked_buffered_body(destination, body, upstream)
        answer = self._picks.get(destination)
        if answer is None:
            if len(self._picks) >= self._LIMIT:
                self._picks.clear()
            answer = self._picks[destination] = picked_buffered_body(destination, None)
        return answer


def chunks(body: bytes, limit: int = BODY_CHUNK_LIMIT) -> Iterator[bytes]:
    """`body` in pieces under `limit` bytes; an empty body is one empty piece (it carries end-of-stream)."""
    if not body:
        yield b""
        return
    for start in range(0, len(body), limit):
        yield body[start : start + limit]


def streamed_request_body(body: bytes) -> list[pb.ProcessingResponse]:
    """Streamed mode: the (rewritten) body as streamed_response messages, end_of_stream on the last."""
    pieces = list(chunks(body))
    return [
        pb.ProcessingResponse(
            request_body=pb.BodyResponse(
                response=pb.CommonResponse(
                    body_mutation=pb.BodyMutation(
                        streamed_response=pb.StreamedBodyResponse(
                            body=piece, end_of_stream=i == len(pieces) - 1
                        )
                    )
                )
            )
        )
        for i, piece in enumerate(pieces)
    ]


def request_trailers() -> pb.ProcessingResponse:
    return pb.ProcessingResponse(request_trailers=pb.TrailersResponse())


def response_headers(add: Mapping[str, str] | None = None) -> pb.ProcessingResponse:
    """Let the response headers through, with `add` set on them (overwriting) when given."""
    common = pb.CommonResponse(header_mutation=_set_headers(add)) if add else pb.CommonResponse()
    return pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=common))


def response_body(chunk: bytes, end_of_stream: bool, streamed: bool) -> pb.ProcessingResponse:
    """Pass a response chunk through unchanged (echoed back in full-duplex mode)."""
    common = pb.CommonResponse()
    if streamed:
        common.body_mutation.streamed_response.body = chunk
        common.body_mutation.streamed_response.end_of_stream = end_of_stream
    return pb.ProcessingResponse(response_body=pb.BodyResponse(response=common))


def replaced_response_body(chunk: bytes, end_of_stream: bool, streamed: bool) -> pb.ProcessingResponse:
    """A response chunk replaced by `chunk` (screened text; empty drops it)."""
    common = pb.CommonResponse()
    if streamed:
        common.body_mutation.streamed_response.body = chunk
        common.body_mutation.streamed_response.end_of_stream = end_of_stream
    elif chunk:
        common.body_mutation.body = chunk
    else:
        common.body_mutation.clear_body = True
    return pb.ProcessingResponse(response_body=pb.BodyResponse(response=common))


def replaced_whole_response(body: bytes) -> pb.ProcessingResponse:
    """A buffered response body replaced, its content-length with it (Envoy sends the answer as is)."""
    common = pb.CommonResponse(header_mutation=_set_headers({"content-length": str(len(body))}))
    common.body_mutation.body = body
    return pb.ProcessingResponse(response_body=pb.BodyResponse(response=common))


def response_trailers() -> pb.ProcessingResponse:
    return pb.ProcessingResponse(response_trailers=pb.TrailersResponse())


def immediate(status: int, body: bytes, headers: dict[str, str] | None = None) -> pb.ProcessingResponse:
    """An answer Envoy sends to the client itself (errors: 400, 404, 429, 503, 500)."""
    all_headers = {"content-type": "application/json", **(headers or {})}
    return pb.ProcessingResponse(
        immediate_response=pb.ImmediateResponse(
            status=http_status_pb2.HttpStatus(code=status),  # type: ignore[arg-type]
            headers=_set_headers(all_headers),
            body=body,
            details=f"inferpool_epp_{status}",
        )
    )
