"""One ext_proc stream = one HTTP request through Envoy: the protocol state machine.

Envoy sends request headers, body chunks, (trailers), then response headers and
body chunks on one bidirectional stream. This class turns each message into the
answers Envoy expects, in order, and keeps the request core's accounting (in-flight
counts, usage) right on every exit path, including a stream that just closes.

Response bodies are the expensive part: with Envoy's response body mode NONE (the
reference config), the answer passes Envoy alone and the request ends when Envoy closes
the stream. Only a sampled share of responses (`ResponseSampler`) is asked for with a
per-request `mode_override` (STREAMED), so their usage and first-token time still reach
the metrics and the latency model. The other requests do not even send their response
headers (a `mode_override` in the answer to the request headers) unless something needs
every answer: a scheduler plugin, P/D, a response-stage GuardPolicy, a fallback list,
tracing, or `every_status`. With FULL_DUPLEX_STREAMED configured in Envoy (as upstream's
reference config and managed gateways do) every chunk comes, as before.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from inferpool.errors import InferenceError
from inferpool.extproc import protocol
from inferpool.gateway.prefill import PREFILL_REPORT_HEADER, parse_prefill_report
from inferpool.guard.attach import GuardSet
from inferpool.guard.openai import (
    ACCEPT_ENCODING,
    IDENTITY,
    Blocked,
    ScreenerLookup,
    StoredAnswerStream,
    StreamScreener,
    content_filtered,
    fetches_stored_answer,
    screen_request,
    screen_response,
    screens_prompt,
    screens_response,
    stored_answer_screener,
)
from inferpool.guard.screen import Screener
from inferpool.observe.tracing import Tracing
from inferpool.records import HttpFacts, new_request_id
from inferpool.request.body import ParsedBody, RefusedBody, parse_body
from inferpool.request.disagg import PREFILLER_HEADER
from inferpool.request.plane import PlaneCore, Routed
from inferpool.state import Endpoint

log = logging.getLogger(__name__)

_MODE = processing_mode_pb2.ProcessingMode
DEFAULT_SAMPLES_PER_SECOND = 5.0


class ResponseSampler:
    """Which responses the picker reads in full: a token bucket of `per_second` (bursts up to
    one second's worth), so light traffic is read whole and heavy traffic costs a bounded share."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self._clock = clock
        self._tokens = max(1.0, per_second)
        self._at = clock()

    def take(self) -> bool:
        if self.per_second <= 0:
            return False
        now = self._clock()
        self._tokens = min(max(1.0, self.per_second), self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def refund(self) -> None:
        """Give back a token taken for a request that ended before it had an answer to read."""
        self._tokens = min(max(1.0, self.per_second), self._tokens + 1.0)


@dataclass(frozen=True)
class StreamConfig:
    """How the picker answers: fallback list length (1 = single endpoint, upstream default), and
    which response bodies it asks for when Envoy does not send them all."""

    fallback_endpoints: int = 1
    sampler: ResponseSampler = field(default_factory=lambda: ResponseSampler(DEFAULT_SAMPLES_PER_SECOND))
    tracing: Tracing | None = None  # None: Envoy's trace headers reach the model server untouched
    # Read every answer's headers (its status and served endpoint), not only the sampled share's:
    # one more message per request, so exact error counts cost ≈15 % more picker CPU.
    every_status: bool = False
    answers: protocol.Answers = field(default_factory=protocol.Answers)  # shared by the streams


class RequestStream:
    """State of one ext_proc stream; feed it messages with `handle`, then call `close`.

    GuardPolicies screen here as in the built-in gateway (`guards`: the core's set, read per
    stream so manifest edits apply): a blocked prompt is an ImmediateResponse 400
    `content_filter`; a response-stage policy has the picker ask for the answer's bytes (per
    request, whatever the sampler says), redact them as they pass, end a blocked stream with
    the same error event, and turn a blocked whole answer into the 400.
    """

    def __init__(
        self,
        core: PlaneCore,
        pool: str,
        config: StreamConfig,
        guards: Callable[[], GuardSet] | None = None,
    ) -> None:
        self._core = core
        self._pool = pool
        self._config = config
        self._guards = guards
        self._request_streamed = False  # request body mode FULL_DUPLEX_STREAMED
        self._response_streamed = False  # response body mode FULL_DUPLEX_STREAMED
        self._response_bodies = True  # Envoy sends response bodies without being asked
        self._request_body_mode: int = _MODE.NONE  # as configured in Envoy (its protocol_config)
        self._answer_skipped = False  # Envoy was told to send no response headers
        self._sampled: bool | None = None  # the sampler's say, when asked at the request headers

        self._headers: dict[str, str] = {}
        self._subset: frozenset[str] | None = None
        self._body = bytearray()
        self._routed: Routed | None = None
        self._candidates: list[Endpoint] = []
        self._prefilling = False  # P/D: the prefill leg holds its endpoint until the answer's headers
        self._status = 0
        self._finished = False
        self._headers_only = False
        self._in_core = False  # the core has seen the request: it records a refusal itself
        self._model = ""
        self._screener: Screener | None = None  # screens the answer (response-stage policy)
        # A stored answer fetched by id (no body): the pool's policy for the model it names
        self._screener_for: ScreenerLookup | None = None
        self._screening: StreamScreener | StoredAnswerStream | None = None  # SSE answer being screened
        self._whole: bytearray | None = None  # non-streamed answer held for screening
        self._blocked = False
        self.done = False  # an ImmediateResponse was sent: Envoy ends the stream

    @property
    def every_chunk_comes(self) -> bool:
        """Envoy sends every response chunk (FULL_DUPLEX_STREAMED), as read from its protocol_config."""
        return self._response_streamed

    async def handle(self, request: pb.ProcessingRequest) -> list[pb.ProcessingResponse]:
        """The answers to one message (possibly none, possibly several, always in order)."""
        if request.HasField("protocol_config"):
            cfg = request.protocol_config
            self._request_streamed = cfg.request_body_mode == _MODE.FULL_DUPLEX_STREAMED
            self._response_streamed = cfg.response_body_mode == _MODE.FULL_DUPLEX_STREAMED
            self._response_bodies = cfg.response_body_mode != _MODE.NONE
            self._request_body_mode = cfg.request_body_mode
        try:
            return await self._dispatch(request)
        except InferenceError as err:
            if self._routed is None and not self._in_core:
                # Refused before the core saw it (a screened prompt): the record is made here.
                self._core.refuse(
                    self._headers.get("x-request-id") or new_request_id(),
                    err,
                    http=HttpFacts(self._headers.get(":method", "POST"), self._headers.get(":path", "/")),
                    model=self._model,
                    request_bytes=len(self._body),
                )
            return self._fail(err.status, err.to_json(), err.headers, err.message)
        except Exception as err:  # the proxy must get an answer, never a dead stream
            log.exception("ext_proc: internal error")
            internal = InferenceError(500, f"internal error in endpoint picker: {type(err).__name__}")
            return self._fail(500, internal.to_json(), {}, internal.message)

    def close(self) -> None:
        """Stream ended (normally, cancelled or reset): release what the request still holds."""
        if self._routed is not None and not self._finished:
            self._finished = True
            if self._answer_skipped:
                # Envoy closes the stream when the HTTP request is over: the end is exact, the
                # status was not asked for (0: not seen).
                self._routed.finish(0)
                return
            error = None if self._status else "stream closed before the response"
            self._routed.finish(self._status or 499, error)

    # -- message kinds ---------------------------------------------------------
    async def _dispatch(self, request: pb.ProcessingRequest) -> list[pb.ProcessingResponse]:
        kind = request.WhichOneof("request")
        if kind == "request_headers":
            return await self._on_request_headers(request)
        if kind == "request_body":
            self._body += request.request_body.body
            if request.request_body.end_of_stream:
                return await self._pick()
            return []
        if kind == "request_trailers":
            answers = await self._pick() if self._routed is None else []
            return [*answers, protocol.request_trailers()]
        if kind == "response_headers":
            return self._on_response_headers(request)
        if kind == "response_body":
            return await self._on_response_body(request.response_body)
        if kind == "response_trailers":
            self._finish(self._status or 200)
            return [protocol.response_trailers()]
        return []

    async def _on_request_headers(self, request: pb.ProcessingRequest) -> list[pb.ProcessingResponse]:
        self._headers = protocol.header_map(request.request_headers.headers)
        self._subset = protocol.subset_hint(request)
        if request.request_headers.end_of_stream:
            self._headers_only = True
            return await self._pick()  # no body (GET): no model to schedule on
        if self._request_streamed:
            return []  # full duplex: the headers answer waits for the whole body
        if self._skips_answer():
            self._answer_skipped = True
            return [self._config.answers.continue_without_answer(self._request_body_mode)]
        return [self._config.answers.continue_headers]

    def _skips_answer(self) -> bool:
        """Whether Envoy can leave this request's answer out entirely (no response headers): it
        sends no response bodies unasked, nothing in the pool needs every answer, and the
        sampler does not pick this request. Decided now, since Envoy takes a `mode_override`
        only in the answer to the request headers, before the model (and the pick) is known."""
        config = self._config
        if self._response_bodies or config.every_status or config.fallback_endpoints > 1:
            return False
        if config.tracing is not None:  # the trace's response span starts at the answer's headers
            return False
        if self._guards is not None and self._guards().may_screen_responses(self._pool):
            return False
        if self._core.reads_answers(self._pool, self._headers.get(":path", "/")):
            return False
        self._sampled = config.sampler.take()
        return not self._sampled

    async def _pick(self) -> list[pb.ProcessingResponse]:
        path = self._headers.get(":path", "/")
        original = bytes(self._body)
        body, parsed = original, None
        guards = self._guards() if self._guards is not None else None
        if guards and not self._headers_only:
            body, parsed = await self._screen_prompt(guards, body, path)
        elif guards and fetches_stored_answer(path):  # no prompt, but a model's answer
            self._screener_for = functools.partial(guards.for_pool, self._pool)
        # With flow control on this waits while the pool is saturated; a stream Envoy resets
        # meanwhile cancels the wait, and the request leaves the queue.
        tracing = self._config.tracing
        trace = tracing.join(self._headers) if tracing is not None else None
        http = HttpFacts(self._headers.get(":method", "POST"), path, trace=trace)
        self._in_core = True
        if self._headers_only:  # nothing to schedule on: a random ready endpoint, as upstream
            routed = self._core.route_without_body(self._pool, path, self._headers, self._subset, http=http)
        else:
            routed = await self._core.route_async(
                self._pool, path, self._headers, body, self._subset, http=http, parsed=parsed
            )
        self._routed = routed
        self._body = bytearray()
        self._candidates = list(routed.candidates[: max(1, self._config.fallback_endpoints)])
        if not self._candidates:
            raise InferenceError(503, "no endpoint available in the pool")
        destination = ",".join(e.hostport for e in self._candidates)
        # Count it in flight now: Envoy connects as soon as it has our answer.
        routed.dispatched(self._candidates[0])
        body = routed.body
        # The model server's traceparent names this picker's request span as its parent.
        upstream = tracing.upstream_headers(trace) if tracing is not None and trace is not None else None
        if routed.prefill_candidates:
            # P/D, llm-d's split: the sidecar beside the decode server runs the prefill leg on
            # the endpoint named here (the header's value overwrites any the client sent).
            prefill = routed.prefill_candidates[0]
            routed.prefill_dispatched(prefill)
            self._prefilling = True
            upstream = {**(upstream or {}), PREFILLER_HEADER: prefill.hostport}
        elif PREFILLER_HEADER in self._headers:
            # A client may not choose the prefill endpoint: its header is removed (a dict look-up
            # is all an ordinary request pays for this).
            upstream = {**(upstream or {}), PREFILLER_HEADER: None}
        if screens_response(self._screener) or self._screener_for is not None:
            # A compressed answer cannot be screened (it passes as it comes): ask for none
            upstream = {**(upstream or {}), ACCEPT_ENCODING: IDENTITY}
        if self._headers_only:
            return [protocol.picked_request_headers(destination, None, upstream)]
        if self._request_streamed:
            return [
                protocol.picked_request_headers(destination, len(body), upstream),
                *protocol.streamed_request_body(body),
            ]
        # Envoy holds the buffered body: send it back only if the core changed it (model rewrite,
        # redaction), which saves serialising and copying it for every other request.
        answers = self._config.answers
        return [answers.picked_buffered_body(destination, None if body is original else body, upstream)]

    async def _screen_prompt(
        self, guards: GuardSet, body: bytes, path: str
    ) -> tuple[bytes, ParsedBody | None]:
        """The body to route (redacted if a policy says so) and its decoding; 400 if blocked."""
        try:
            parsed = parse_body(body, path)
        except RefusedBody as exc:
            self._model = exc.model
            return body, None  # the core answers a malformed body with vLLM's 400
        except InferenceError:
            return body, None
        self._model = parsed.model
        screener = guards.for_pool(self._pool, parsed.model)
        if screens_response(screener):
            self._screener = screener
        if not screens_prompt(screener):
            return body, parsed
        assert screener is not None
        try:
            screened = await screen_request(screener, body, parsed.model, parsed.data)
        except Blocked as blocked:
            raise content_filtered(blocked.reason, "prompt") from None
        return (screened, None) if screened is not body else (body, parsed)

    def _on_response_headers(self, request: pb.ProcessingRequest) -> list[pb.ProcessingResponse]:
        # They came though the picker asked for none (an Envoy with `allow_mode_override: false`
        # ignores the override): the status is known after all.
        self._answer_skipped = False
        self._status, content_type, content_encoding = protocol.response_facts(
            request.response_headers.headers
        )
        served = protocol.served_endpoint(request)
        # P/D: the decode server's answer has begun, so its sidecar has run the prefill leg.
        strip_report = self._end_prefill(request.response_headers.headers) if self._prefilling else False
        if self._routed is not None:
            if served is not None and self._candidates and served != self._candidates[0].hostport:
                # A fallback served: move the in-flight count to the endpoint that has it.
                for endpoint in self._candidates[1:]:
                    if endpoint.hostport == served:
                        self._routed.dispatched(endpoint)
                        break
            self._routed.response_started(self._status, content_type)
        # Scheduler plugins' headers for the client (the session token), for the endpoint that served.
        answer = protocol.response_headers(
            self._routed.response_headers() if self._routed is not None else None
        )
        if strip_report:  # the sidecar's report is for the picker, not the client
            answer.response_headers.response.header_mutation.remove_headers.append(PREFILL_REPORT_HEADER)
        if request.response_headers.end_of_stream:
            self._finish(self._status)
            return [answer]
        screener = self._screener
        sse = content_type is not None and "text/event-stream" in content_type
        # (a stored answer fetched by id: its own `model` picks the policy, once a whole one is
        # read or a streamed one's first event is in)
        stored = self._screener_for
        if (screener is not None or stored is not None) and self._status < 400 and content_encoding is None:
            if not sse:
                self._whole = bytearray()
            elif stored is not None:
                self._screening = StoredAnswerStream(stored)
            elif screener is not None:
                self._screening = StreamScreener(screener, self._model)
            if not self._response_bodies:
                # Envoy honours the override only when neither body mode is FULL_DUPLEX_STREAMED;
                # a whole answer is buffered, so a block can still become the 400.
                answer.mode_override.response_body_mode = _MODE.STREAMED if sse else _MODE.BUFFERED
        elif self._wants_body():
            answer.mode_override.response_body_mode = _MODE.STREAMED
        return [answer]

    def _end_prefill(self, headers: base_pb2.HeaderMap) -> bool:
        """Record the prefill leg as the sidecar reports it and release the prefill endpoint's
        in-flight count; True when the answer carries the report (to be removed from it)."""
        self._prefilling = False
        assert self._routed is not None
        value = protocol.header_value(headers, PREFILL_REPORT_HEADER)
        report = parse_prefill_report(value) if value is not None else None
        if report is None:
            # No (readable) report: nothing beside the decode server ran the leg, so it prefilled
            # the prompt itself, as after a fallback.
            self._routed.prefill_finished(
                0, f"the decode server's answer has no {PREFILL_REPORT_HEADER} report", fell_back=True
            )
            return value is not None
        self._routed.prefill_finished(report.status, report.error, report.duration_s, fell_back=not report.ok)
        return True

    def _wants_body(self) -> bool:
        return (
            not self._response_bodies
            and not self._request_streamed
            and self._routed is not None
            and (
                self._routed.needs_answer
                or (self._sampled if self._sampled is not None else self._config.sampler.take())
            )
        )

    def answer_at_once(self, request: pb.ProcessingRequest) -> list[pb.ProcessingResponse] | None:
        """The answers to a body chunk that needs nothing but this stream's own state, or None
        when `handle` must take the message: a chunk of a streamed request body (kept until the
        last), or a response chunk passed on unscreened that is not the last. It touches no state
        shared with other streams, so the threaded server calls it from the stream's own thread,
        between messages `handle` has finished, sparing each chunk the trip to the event loop."""
        kind = request.WhichOneof("request")
        if kind == "response_body":
            body = request.response_body
            if body.end_of_stream or self._screening is not None or self._whole is not None:
                return None
            self._account(body.body)
            return [protocol.response_body(body.body, False, self._response_streamed)]
        if kind == "request_body" and not request.request_body.end_of_stream:
            if request.HasField("protocol_config"):
                return None  # the first message: `handle` reads the modes
            self._body += request.request_body.body
            return []
        return None

    def _account(self, chunk: bytes) -> None:
        """Usage and token times from an answer's chunk; a chunk they cannot be read from still passes."""
        if self._routed is not None and chunk:
            try:
                self._routed.response_data(chunk)
            except Exception:
                log.exception("ext_proc: response accounting failed; the answer is passed on")

    async def _on_response_body(self, body: pb.HttpBody) -> list[pb.ProcessingResponse]:
        self._account(body.body)
        if self._screening is not None or self._whole is not None:
            return await self._screen_response(body)
        if body.end_of_stream:
            self._finish(self._status or 200)
        return [protocol.response_body(body.body, body.end_of_stream, self._response_streamed)]

    async def _screen_response(self, body: pb.HttpBody) -> list[pb.ProcessingResponse]:
        """The answer through its screener: redacted as it passes, or ended by a block."""
        eos, streamed = body.end_of_stream, self._response_streamed
        if self._whole is not None:
            self._whole += body.body
            if not eos:
                return [protocol.replaced_response_body(b"", False, streamed)]  # held until the end
            whole, screener, model = bytes(self._whole), self._screener, self._model
            if self._screener_for is not None:  # a stored answer: the policy for its model
                screener, model = stored_answer_screener(self._screener_for, whole)
            try:
                if screener is not None:
                    whole = await screen_response(screener, whole, model)
            except Blocked as blocked:
                if not streamed:
                    raise content_filtered(blocked.reason, "response") from None
                # Full duplex: the status line is gone; the answer becomes the error body.
                self._finish(self._status, f"content_filter: {blocked.reason}")
                return [
                    protocol.replaced_response_body(
                        content_filtered(blocked.reason, "response").to_json(), True, True
                    )
                ]
            self._finish(self._status or 200)
            if streamed:
                return [protocol.replaced_response_body(whole, True, True)]
            return [protocol.replaced_whole_response(whole)]
        assert self._screening is not None
        out = b""
        if not self._blocked:
            try:
                out = await self._screening.feed(body.body)
                if eos:
                    out += await self._screening.close()  # what it held back, once screened
            except Blocked as blocked:
                # As in the built-in gateway: the client gets an error event, then the end.
                self._blocked = True
                out += blocked.passed + blocked.final_event
                self._finish(self._status, f"content_filter: {blocked.reason}")
        if eos:
            self._finish(self._status or 200)
        return [protocol.replaced_response_body(out, eos, streamed)]

    # -- endings -----------------------------------------------------------------
    def _finish(self, status: int, error: str | None = None) -> None:
        if self._routed is not None and not self._finished:
            self._finished = True
            self._routed.finish(status, error)

    def _fail(
        self, status: int, body: bytes, headers: dict[str, str], message: str
    ) -> list[pb.ProcessingResponse]:
        self.done = True
        self._finish(status, message)
        if self._sampled and not self._status:
            # Refused before any answer (the sampler is asked at the request headers, before
            # the pick): the token goes back, so refusals do not thin the sample of real answers.
            self._sampled = False
            self._config.sampler.refund()
        return [protocol.immediate(status, body, headers)]
