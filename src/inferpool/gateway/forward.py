"""Forward one routed request to its endpoints and relay the answer.

A retry is only safe while the client has seen nothing, so the response is not started
until an upstream answered with a non-5xx status (or the last try answered at all); from
the first byte on, the gateway is a pipe (a small non-streamed answer is read whole first and
sent in one write). Every byte also passes the request's accounting
(`Routed.response_data`), and a request ends in exactly one `finish()` on every path.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from inferpool.errors import InferenceError
from inferpool.gateway import direct_relay
from inferpool.gateway.config import ProxyConfig
from inferpool.gateway.headers import REQUEST_ID_HEADER, SERVED_HEADER, end_to_end
from inferpool.gateway.prefill import run_prefill
from inferpool.gateway.upstream import send
from inferpool.gateway.upstream import session as upstream_session
from inferpool.guard.openai import (
    Blocked,
    ScreenerLookup,
    StoredAnswerStream,
    StreamScreener,
    content_filtered,
    screen_response,
    screens_response,
    stored_answer_screener,
)
from inferpool.guard.screen import Screener
from inferpool.request.disagg import decode_request
from inferpool.request.pd_usage import CachedTokensRewriter
from inferpool.request.plane import Routed
from inferpool.state import Endpoint

_RETRYABLE = (aiohttp.ClientConnectionError, ConnectionError)
# A non-streamed answer up to this size is read whole and sent in one write (a JSON completion
# is a few KB; a batch of embeddings can reach hundreds); a larger one is piped as it comes.
_WHOLE_ANSWER_BYTES = 1 << 20
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


@dataclass(slots=True)
class Relay:
    """What the answer to one request needs besides the upstream response."""

    request_id: str
    model: str  # as the client asked (screening looks up its policy by it)
    # e.g. rate-limit state; replaced, never changed in place, so every relay can share one empty map
    answer_headers: Mapping[str, str] = field(default_factory=lambda: _NO_HEADERS)
    screener: Screener | None = None
    # A stored answer fetched by id (no body, so no model before the answer's): the policy for
    # a model, looked up once the answer names it (`fetches_stored_answer`)
    screener_for: ScreenerLookup | None = None
    status: int = 0  # set once the client has been sent a status line
    # P/D: the prefill server's cached prompt tokens, reported in the decode answer's usage as
    # one server would have (request/pd_usage.py); None when no prefill leg succeeded.
    prefill_cached_tokens: int | None = None


class Forwarder:
    """One pooled upstream session for every listener; `forward` runs one request's tries."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.on_connect_error: Callable[[Endpoint], None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}  # per route try timeout
        self._turn_writes = direct_relay.TurnWrites()

    async def start(self) -> None:
        self._session = upstream_session(self.config.connect_timeout_s)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(
        self,
        request: web.BaseRequest,
        routed: Routed,
        headers: dict[str, str],
        try_timeout_s: float | None,
        relay: Relay,
    ) -> web.StreamResponse:
        assert self._session is not None, "Forwarder.start() was not awaited"
        candidates = routed.candidates
        if not candidates:
            raise InferenceError(503, "No ready endpoint for this backend.")
        # (a copy: the core holds the request's own; the request sent copies them once more)
        upstream_headers = dict(headers)
        forwarded_for = request.remote or ""
        if forwarded_for:
            prior = headers.get("x-forwarded-for")
            upstream_headers["x-forwarded-for"] = f"{prior}, {forwarded_for}" if prior else forwarded_for
        body = routed.body
        if routed.prefill_candidates:  # P/D: the prefill leg first; the decode leg carries its result
            body = await self._prefill(request, routed, upstream_headers, try_timeout_s, relay)
        tries = list(candidates[: self.config.max_retries + 1])  # a copy: a retry inserts into it
        last_error = "no endpoint was tried"
        i = -1
        while (i := i + 1) < len(tries):
            endpoint = tries[i]
            last = i == len(tries) - 1
            routed.dispatched(endpoint)
            timeout = self._timeouts.get(try_timeout_s)
            if timeout is None:
                timeout = self._timeouts[try_timeout_s] = aiohttp.ClientTimeout(
                    total=try_timeout_s, connect=self.config.connect_timeout_s, sock_read=None
                )
            try:
                upstream = await send(
                    self._session,
                    request.method,
                    URL(f"http://{endpoint.hostport}{request.path_qs}"),
                    upstream_headers,
                    body,
                    timeout,
                )
            except TimeoutError:
                raise InferenceError(504, f"Endpoint {endpoint.hostport} did not answer in time.") from None
            except _RETRYABLE as exc:
                last_error = f"{endpoint.hostport}: {type(exc).__name__}: {exc}"
                if isinstance(exc, aiohttp.ClientConnectorError) and self.on_connect_error is not None:
                    self.on_connect_error(endpoint)
                continue
            try:
                if upstream.status >= 500 and body is not routed.body:
                    # The decoder could not read the prefilled KV blocks (vLLM's default
                    # kv_load_failure_policy "fail" answers 500, e.g. when the prefill server
                    # went away): the client's own request, prefilled locally, can still be
                    # served, on this decoder again before the next one.
                    last_error = f"{endpoint.hostport}: HTTP {upstream.status} reading the prefilled KV"
                    await upstream.read()
                    body = routed.body
                    relay.prefill_cached_tokens = None
                    routed.prefill_transfer_failed(last_error)
                    tries.insert(i + 1, endpoint)
                    continue
                if upstream.status >= 500 and not last:
                    last_error = f"{endpoint.hostport}: HTTP {upstream.status}"
                    await upstream.read()
                    continue
                return await self._relay(request, upstream, endpoint, routed, relay, try_timeout_s is None)
            finally:
                # A half-read answer must not go back to the pool: close() drops the connection,
                # which is also how a client disconnect cancels the model server's work.
                if upstream.content.at_eof():
                    upstream.release()
                else:
                    upstream.close()
        raise InferenceError(
            502, f"Every try to reach a model server failed ({len(tries)} tried); last: {last_error}"
        )

    async def _prefill(
        self,
        request: web.BaseRequest,
        routed: Routed,
        headers: Mapping[str, str],
        try_timeout_s: float | None,
        relay: Relay,
    ) -> bytes:
        """Run the prefill leg on the first prefill candidate; the decode leg's body.

        vLLM's disaggregated protocol (request/disagg.py): the decode leg is the client's
        request plus the `kv_transfer_params` the prefill answered with. A prefill that fails
        is no failure for the client: the decode endpoint gets the client's body unchanged
        and prefills locally, and the record says the leg fell back.
        """
        assert self._session is not None
        data = routed.pd_body
        assert data is not None, "a split request carries its decoded body"
        endpoint = routed.prefill_candidates[0]
        routed.prefill_dispatched(endpoint)
        outcome = await run_prefill(
            self._session, endpoint.hostport, request.path_qs, data, headers, try_timeout_s
        )
        if outcome.kv_transfer_params is None:
            routed.prefill_finished(outcome.status, outcome.error, outcome.duration_s, fell_back=True)
            if outcome.connect_failed and self.on_connect_error is not None:
                self.on_connect_error(endpoint)  # out of the prefill rotation until it scrapes well again
            return routed.body
        routed.prefill_finished(outcome.status, None, outcome.duration_s)
        relay.prefill_cached_tokens = outcome.cached_tokens
        return orjson.dumps(decode_request(data, outcome.kv_transfer_params))

    async def _relay(
        self,
        request: web.BaseRequest,
        upstream: aiohttp.ClientResponse,
        endpoint: Endpoint,
        routed: Routed,
        relay: Relay,
        undated: bool,
    ) -> web.StreamResponse:
        """Pipe the answer to the client; `undated`: no per-try deadline (aiohttp enforces one
        only on a task reading through its reader, so the direct relay is not used then)."""
        headers = end_to_end(upstream.headers)
        headers[REQUEST_ID_HEADER] = relay.request_id
        headers[SERVED_HEADER] = endpoint.hostport
        if relay.answer_headers:
            headers.update(relay.answer_headers)
        plugin_headers = routed.response_headers()  # scheduler plugins' (the session token)
        if plugin_headers:
            headers.update(plugin_headers)
        content_type = upstream.headers.get("content-type", "")
        screener = relay.screener if screens_response(relay.screener) else None
        # (a stored answer fetched by id: the policy for the model it names, once it is read)
        screened = (
            (screener is not None or relay.screener_for is not None)
            and upstream.status < 400
            and "content-encoding" not in upstream.headers
        )
        usage = None
        if relay.prefill_cached_tokens is not None and upstream.status < 400:
            if "content-encoding" not in upstream.headers:
                streaming = "text/event-stream" in content_type
                usage = CachedTokensRewriter(relay.prefill_cached_tokens, streaming)
        if screened and "text/event-stream" not in content_type:
            return await self._relay_screened(upstream, headers, screener, routed, relay, usage)
        stream: StreamScreener | StoredAnswerStream | None = None
        if screened:
            if relay.screener_for is not None:
                stream = StoredAnswerStream(relay.screener_for)
            elif screener is not None:
                stream = StreamScreener(screener, relay.model)
        length = upstream.content_length
        if (
            length is not None
            and length <= _WHOLE_ANSWER_BYTES
            and stream is None
            and usage is None
            and "text/event-stream" not in content_type
        ):
            return await self._relay_whole(upstream, headers, routed, relay)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        if (
            upstream.content_length is not None
            and "content-encoding" not in upstream.headers
            and not stream
            and usage is None
        ):
            response.content_length = upstream.content_length
        relay.status = upstream.status
        routed.response_started(upstream.status, upstream.headers.get("content-type"))
        await response.prepare(request)
        chunks = upstream.content.iter_any() if usage is None else _rewritten(upstream, usage)
        try:
            if (
                undated
                and stream is None
                and usage is None
                and "text/event-stream" in content_type
                and request.transport is not None
                and direct_relay.usable(upstream.content, response)
            ):
                await direct_relay.DirectRelay(
                    upstream.content, request.transport, routed, upstream.status, self._turn_writes
                ).run(response)
            async for chunk in chunks:
                routed.response_data(chunk)
                if stream is not None:
                    try:
                        chunk = await stream.feed(chunk)
                    except Blocked as blocked:
                        return await _end_blocked(response, routed, upstream.status, blocked)
                if chunk:
                    await response.write(chunk)
                if routed.response_complete:
                    # The client has `data: [DONE]` and may hang up before the upstream closes;
                    # that is a completed request, not a disconnect.
                    routed.finish(upstream.status)
            if stream is not None:
                try:
                    rest = await stream.close()  # what it held back, once screened
                except Blocked as blocked:
                    return await _end_blocked(response, routed, upstream.status, blocked)
                if rest:
                    await response.write(rest)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            # The model server went away mid-answer: nothing can be retried now; cut the client off too.
            routed.finish(502, f"upstream broke mid-response: {type(exc).__name__}")
            if "text/event-stream" in content_type:
                # A stream ends with an error event the client's SSE parser reports, not a silent cut.
                event = InferenceError(502, f"The model server went away mid-stream ({type(exc).__name__}).")
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await response.write(b"data: " + event.to_json() + b"\n\n")
                    await response.write_eof()
                    return response
            if request.transport is not None:
                request.transport.close()
            return response
        routed.finish(upstream.status, None if upstream.status < 400 else f"HTTP {upstream.status}")
        # Every byte of the answer has been relayed: a client that hangs up as soon as it has
        # read `data: [DONE]`, before the terminating chunk, did not make the request fail.
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _relay_whole(
        self,
        upstream: aiohttp.ClientResponse,
        headers: Mapping[str, str],
        routed: Routed,
        relay: Relay,
    ) -> web.StreamResponse:
        """A small answer of known length, not a stream: read it whole, send it in one write.

        One response object and one send instead of headers, body and end written apart; the
        client gets nothing before the model server's last byte, which a non-streamed answer's
        client waits for anyway. An answer cut short is a clean 502, nothing sent yet.
        """
        routed.response_started(upstream.status, upstream.headers.get("content-type"))
        try:
            body = await upstream.read()
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            routed.finish(502, f"upstream broke mid-response: {type(exc).__name__}")
            raise InferenceError(
                502, f"The model server went away mid-answer ({type(exc).__name__})."
            ) from None
        routed.response_data(body)
        relay.status = upstream.status
        response = web.Response(status=upstream.status, reason=upstream.reason, body=body, headers=headers)
        routed.finish(upstream.status, None if upstream.status < 400 else f"HTTP {upstream.status}")
        return response

    async def _relay_screened(
        self,
        upstream: aiohttp.ClientResponse,
        headers: Mapping[str, str],
        screener: Screener | None,
        routed: Routed,
        relay: Relay,
        usage: CachedTokensRewriter | None,
    ) -> web.StreamResponse:
        """A whole (non-streamed) answer: read it all, screen it, then send it or a 400. A stored
        answer fetched by id (`relay.screener_for`) is screened by the policy for its model."""
        routed.response_started(upstream.status, upstream.headers.get("content-type"))
        chunks: list[bytes] = []
        async for chunk in upstream.content.iter_any() if usage is None else _rewritten(upstream, usage):
            routed.response_data(chunk)
            chunks.append(chunk)
        body, model = b"".join(chunks), relay.model
        if relay.screener_for is not None:
            screener, model = stored_answer_screener(relay.screener_for, body)
        try:
            if screener is not None:
                body = await screen_response(screener, body, model)
        except Blocked as blocked:
            routed.finish(upstream.status, f"content_filter: {blocked.reason}")
            raise content_filtered(blocked.reason, "response") from None
        relay.status = upstream.status
        response = web.Response(status=upstream.status, reason=upstream.reason, body=body, headers=headers)
        routed.finish(upstream.status, None)
        return response


async def _rewritten(upstream: aiohttp.ClientResponse, usage: CachedTokensRewriter) -> AsyncIterator[bytes]:
    """The upstream answer with its usage rewritten (P/D decode legs); empty pieces left out."""
    async for chunk in upstream.content.iter_any():
        if out := usage.feed(chunk):
            yield out
    if rest := usage.flush():
        yield rest


async def _end_blocked(
    response: web.StreamResponse, routed: Routed, status: int, blocked: Blocked
) -> web.StreamResponse:
    """A screened stream that blocked: the client has the status line already, so it gets what
    passed before the block, the stream's error event, then the end."""
    await response.write(blocked.passed + blocked.final_event)
    await response.write_eof()
    routed.finish(status, f"content_filter: {blocked.reason}")
    return response
