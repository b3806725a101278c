"""Forwarding one request: route match, ask the core for endpoints, relay the answer unbuffered.

A retry is only safe while the client has seen nothing, so the response is not started
until an upstream answered with a non-5xx status (or the last try answered at all); from
the first byte on, the gateway is a pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson
from aiohttp import web

from inferpool.errors import InferenceError
from inferpool.gateway.auth import ApiKey, KeyStore, authorize_model
from inferpool.gateway.config import ProxyConfig
from inferpool.gateway.headers import REQUEST_ID_HEADER, SERVED_HEADER, end_to_end, lower_dict
from inferpool.gateway.ratelimit import RateLimiter
from inferpool.gateway.routing import (
    BackendRef,
    Listener,
    Match,
    RequestFacts,
    RouteTable,
    apply_header_modifier,
    choose_backend,
)
from inferpool.guard.attach import GuardSet
from inferpool.guard.openai import Blocked, StreamScreener, error_event, screen_request, screen_response
from inferpool.guard.policy import Stage
from inferpool.guard.screen import Screener
from inferpool.request.plane import Routed
from inferpool.request.resolve import FAIRNESS_HEADER, OBJECTIVE_HEADER
from inferpool.state import Datastore, Endpoint

_RETRYABLE = (aiohttp.ClientConnectionError, ConnectionError)
# A request waiting in flow control leaves the queue (503) this long before its route timeout
# would fire (504), so the answer and the core's record agree on why it failed.
_QUEUE_TTL_MARGIN_S = 0.01


class Core(Protocol):
    """The request core (request.Director) as the data plane uses it."""

    async def route_async(
        self,
        pool: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        subset: frozenset[str] | None = None,
        ttl_s: float | None = None,
    ) -> Routed: ...

    def served_models(self, pool: str) -> list[Any]: ...


@dataclass
class Exchange:
    """What the data plane saw of one request; becomes the access-log line."""

    request_id: str
    method: str
    path: str
    listener: str
    started: float = field(default_factory=time.monotonic)
    route: str | None = None
    backend: str | None = None
    endpoint: str | None = None
    attempts: int = 0
    status: int = 0
    error: str | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    ttft_s: float | None = None
    duration_s: float = 0.0
    routed: Routed | None = None
    key: ApiKey | None = None  # the caller's API key when auth is on
    extra_headers: dict[str, str] = field(default_factory=dict)  # added to the answer (rate-limit state)
    screener: Screener | None = None  # the guard policy screening this request, if any
    model: str = ""  # the model the client asked for


def request_model(body: bytes) -> str:
    """The `model` field of a JSON body, or "" (the core reports malformed bodies itself)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    model = data.get("model") if isinstance(data, dict) else None
    return model if isinstance(model, str) else ""


def content_filtered(reason: str, param: str) -> InferenceError:
    """The 400 a guard block answers (OpenAI's `content_filter` finish reason, as an error type)."""
    return InferenceError(400, reason, param=param, err_type="content_filter")


def error_response(
    err: InferenceError, request_id: str | None = None, extra: Mapping[str, str] | None = None
) -> web.Response:
    headers = {**(extra or {}), **err.headers}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return web.Response(
        status=err.status, body=err.to_json(), content_type="application/json", headers=headers
    )


class Proxy:
    """The request handler shared by every listener; one pooled upstream session."""

    def __init__(
        self,
        table: RouteTable,
        datastore: Datastore,
        core: Core,
        config: ProxyConfig,
        services: dict[str, list[tuple[str, int]]] | None = None,
        on_exchange: Callable[[Exchange], None] | None = None,
        on_routed: Callable[[Routed], None] | None = None,
        keys: KeyStore | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.table = table
        self.datastore = datastore
        self.core = core
        self.config = config
        self.services = services or {}
        self._rr: dict[str, itertools.count[int]] = {}
        self._on_exchange = on_exchange
        self._on_routed = on_routed
        self.keys = keys  # None: authentication is off (explicitly configured)
        self.limiter = limiter
        self.guards = GuardSet()  # GuardPolicies; replaced when the manifests change
        # Passive ejection: told about an endpoint that refused a connection (the runtime marks it
        # not ready until its next successful scrape).
        self.on_connect_error: Callable[[Endpoint], None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=self.config.connect_timeout_s),
            skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def drained(self, timeout_s: float) -> bool:
        """Wait until no request is in flight; False if `timeout_s` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except TimeoutError:
            return False

    def handler(self, listener: Listener) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.handle(listener, request)

        return handle

    # -- one request ----------------------------------------------------------------
    async def handle(self, listener: Listener, request: web.Request) -> web.StreamResponse:
        request_id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        ex = Exchange(request_id, request.method, request.path_qs, f"{listener.gateway}/{listener.name}")
        self.in_flight += 1
        self._idle.clear()
        try:
            return await self._handle(listener, request, ex)
        except InferenceError as err:
            ex.status, ex.error = err.status, err.message
            if ex.routed is not None:
                ex.routed.finish(err.status, err.message)
            return error_response(err, request_id, ex.extra_headers)
        except (asyncio.CancelledError, ConnectionResetError):
            if ex.routed is None or not ex.routed.finished:
                ex.status, ex.error = 499, "client disconnected"
                if ex.routed is not None:
                    ex.routed.finish(499, ex.error)
            raise
        except Exception as exc:
            ex.status, ex.error = 500, f"{type(exc).__name__}: {exc}"
            if ex.routed is not None:
                ex.routed.finish(500, ex.error)
            raise
        finally:
            self._charge(ex)
            ex.duration_s = time.monotonic() - ex.started
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()
            if self._on_exchange is not None:
                self._on_exchange(ex)

    async def _handle(self, listener: Listener, request: web.Request, ex: Exchange) -> web.StreamResponse:
        headers = lower_dict(end_to_end(request.headers, drop=("host",)))
        if self.keys is not None:
            ex.key = self.keys.authenticate(headers)
            headers.pop("authorization", None)  # the gateway's key is not the model server's business
        facts = RequestFacts(
            host=request.host or "",
            method=request.method,
            path=request.path,
            headers=headers,
            query=request.query,
        )
        match = self.table.match(listener.gateway, listener.name, facts)
        if match is None:
            raise InferenceError(404, f"No route matches {request.method} {request.path} on this listener.")
        ex.route = match.route.key
        if request.method == "GET" and request.path.rstrip("/").endswith("/v1/models"):
            pools = [b.key for b in match.rule.backends if b.kind == "InferencePool"]
            if pools:
                ex.status = 200
                return self._models_response(pools, ex.request_id)
        backend = choose_backend(match.rule)
        if backend is None:
            raise InferenceError(500, f"Route {match.route.key} has no backend that can take traffic.")
        ex.backend = f"{backend.kind}/{backend.key}"
        body = await self._read_body(request)
        ex.request_bytes = len(body)
        ex.model = request_model(body)
        if ex.key is not None:
            self._admit_key(ex.key, body, headers, ex)
        if self.guards:
            ex.screener = self.guards.for_request(listener.gateway, match.route.key, ex.model)
        if ex.screener is not None and ex.screener.config.screens(Stage.PROMPT):
            try:
                body = await screen_request(ex.screener, body, ex.model)
            except Blocked as blocked:
                raise content_filtered(blocked.reason, "prompt") from None
        if match.rule.request_headers is not None:
            headers = apply_header_modifier(headers, match.rule.request_headers)
        headers[REQUEST_ID_HEADER] = ex.request_id
        total = match.rule.timeout_s
        try:
            async with asyncio.timeout(total) as scope:
                return await self._dispatch(request, match, backend, headers, body, ex, scope.when())
        except TimeoutError:
            if ex.status == 0:
                raise InferenceError(
                    504, f"Request timed out after {total:g}s (HTTPRoute timeouts.request)."
                ) from None
            raise

    def _admit_key(self, key: ApiKey, body: bytes, headers: dict[str, str], ex: Exchange) -> None:
        """Model grant (403), then the key's RPM/TPM (429), then its priority and fairness identity."""
        authorize_model(key, ex.model)
        if self.limiter is not None:
            ex.extra_headers.update(self.limiter.admit(key).headers())
        if key.objective is not None:
            headers[OBJECTIVE_HEADER] = key.objective
        headers[FAIRNESS_HEADER] = key.name  # one fairness flow per tenant; clients cannot pose as another

    def _charge(self, ex: Exchange) -> None:
        """Charge a keyed request's actual token use (the model server's usage, else the estimate)."""
        if ex.key is None or self.limiter is None or ex.routed is None:
            return
        record = getattr(ex.routed, "record", None)
        if record is None:
            return
        prompt = record.prompt_tokens if record.prompt_tokens is not None else record.prompt_tokens_estimate
        self.limiter.charge(ex.key, int(prompt or 0) + int(record.completion_tokens or 0))

    def _models_response(self, pools: list[str], request_id: str) -> web.Response:
        now = int(time.time())
        data: list[dict[str, Any]] = []
        seen: set[str] = set()
        for pool in pools:
            for entry in self.core.served_models(pool):
                item = _model_entry(entry, now)
                if item["id"] not in seen:
                    seen.add(item["id"])
                    data.append(item)
        return web.Response(
            body=orjson.dumps({"object": "list", "data": data}),
            content_type="application/json",
            headers={REQUEST_ID_HEADER: request_id},
        )

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise InferenceError(
                413, f"Request body of {request.content_length} bytes exceeds the limit of {limit}."
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise InferenceError(413, f"Request body exceeds the limit of {limit} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _dispatch(
        self,
        request: web.Request,
        match: Match,
        backend: BackendRef,
        headers: dict[str, str],
        body: bytes,
        ex: Exchange,
        deadline: float | None,
    ) -> web.StreamResponse:
        if backend.kind == "InferencePool":
            if self.datastore.pool(backend.key) is None:
                raise InferenceError(
                    500, f"InferencePool {backend.key} referenced by {match.route.key} does not exist."
                )
            ttl_s = None
            if deadline is not None:
                ttl_s = max(0.0, deadline - asyncio.get_running_loop().time() - _QUEUE_TTL_MARGIN_S)
            routed = await self.core.route_async(backend.key, request.path_qs, headers, body, ttl_s=ttl_s)
            ex.routed = routed
            if self._on_routed is not None:
                self._on_routed(routed)
            candidates = list(routed.candidates)
            body = routed.body
        else:
            candidates = self._service_endpoints(backend)
        if not candidates:
            raise InferenceError(503, f"No ready endpoint for {backend.kind} {backend.key}.")
        return await self._forward(request, candidates, headers, body, match.rule.backend_timeout_s, ex)

    def _service_endpoints(self, backend: BackendRef) -> list[Endpoint]:
        addresses = self.services.get(backend.key, [])
        if not addresses:
            return []
        start = next(self._rr.setdefault(backend.key, itertools.count()))
        ordered = addresses[start % len(addresses) :] + addresses[: start % len(addresses)]
        return [Endpoint(f"{a}:{p}", a, p, backend.key) for a, p in ordered]

    async def _forward(
        self,
        request: web.Request,
        candidates: list[Endpoint],
        headers: dict[str, str],
        body: bytes,
        try_timeout_s: float | None,
        ex: Exchange,
    ) -> web.StreamResponse:
        assert self._session is not None, "Proxy.start() was not awaited"
        upstream_headers = dict(headers)
        forwarded_for = request.remote or ""
        if forwarded_for:
            prior = headers.get("x-forwarded-for")
            upstream_headers["x-forwarded-for"] = f"{prior}, {forwarded_for}" if prior else forwarded_for
        attempts = candidates[: self.config.max_retries + 1]
        last_error = "no endpoint was tried"
        for i, endpoint in enumerate(attempts):
            last = i == len(attempts) - 1
            ex.attempts += 1
            ex.endpoint = endpoint.hostport
            if ex.routed is not None:
                ex.routed.dispatched(endpoint)
            url = f"http://{endpoint.hostport}{request.path_qs}"
            timeout = aiohttp.ClientTimeout(
                total=try_timeout_s, connect=self.config.connect_timeout_s, sock_read=None
            )
            try:
                upstream = await self._session.request(
                    request.method,
                    url,
                    headers=upstream_headers,
                    data=body,
                    timeout=timeout,
                    allow_redirects=False,
                )
            except TimeoutError:
                raise InferenceError(504, f"Endpoint {endpoint.hostport} did not answer in time.") from None
            except _RETRYABLE as exc:
                last_error = f"{endpoint.hostport}: {type(exc).__name__}: {exc}"
                if isinstance(exc, aiohttp.ClientConnectorError) and ex.routed and self.on_connect_error:
                    self.on_connect_error(endpoint)
                continue
            try:
                if upstream.status >= 500 and not last:
                    last_error = f"{endpoint.hostport}: HTTP {upstream.status}"
                    await upstream.read()
                    continue
                return await self._relay(request, upstream, endpoint, ex)
            finally:
                # A half-read answer must not go back to the pool: close() drops the connection,
                # which is also how a client disconnect cancels the model server's work.
                if upstream.content.at_eof():
                    upstream.release()
                else:
                    upstream.close()
        raise InferenceError(
            502, f"Every try to reach a model server failed ({ex.attempts} tried); last: {last_error}"
        )

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse, endpoint: Endpoint, ex: Exchange
    ) -> web.StreamResponse:
        headers = end_to_end(upstream.headers)
        headers[REQUEST_ID_HEADER] = ex.request_id
        headers[SERVED_HEADER] = endpoint.hostport
        headers.update(ex.extra_headers)
        screener = ex.screener if ex.screener and ex.screener.config.screens(Stage.RESPONSE) else None
        content_type = upstream.headers.get("content-type", "")
        screened = (
            screener is not None and upstream.status < 400 and "content-encoding" not in upstream.headers
        )
        if screened and "text/event-stream" not in content_type:
            assert screener is not None
            return await self._relay_screened(request, upstream, headers, screener, ex)
        stream = StreamScreener(screener, ex.model) if screened and screener is not None else None
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        if upstream.content_length is not None and "content-encoding" not in upstream.headers and not stream:
            response.content_length = upstream.content_length
        ex.status = upstream.status
        if ex.routed is not None:
            ex.routed.response_started(upstream.status, lower_dict(upstream.headers))
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                if ex.ttft_s is None:
                    ex.ttft_s = time.monotonic() - ex.started
                ex.response_bytes += len(chunk)
                if ex.routed is not None:
                    ex.routed.response_data(chunk)
                if stream is not None:
                    try:
                        chunk = await stream.feed(chunk)
                    except Blocked as blocked:
                        # The client has the status line already: end with an error event, then close.
                        ex.error = blocked.reason
                        await response.write(error_event(blocked.reason))
                        await response.write_eof()
                        if ex.routed is not None:
                            ex.routed.finish(upstream.status, f"content_filter: {blocked.reason}")
                        return response
                if chunk:
                    await response.write(chunk)
                if ex.routed is not None and ex.routed.response_complete:
                    # The client has `data: [DONE]` and may hang up before the upstream closes;
                    # that is a completed request, not a disconnect.
                    ex.routed.finish(upstream.status)
            if stream is not None and (rest := stream.flush()):
                await response.write(rest)
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
            # The model server went away mid-answer: nothing can be retried now; cut the client off too.
            ex.error = f"upstream broke mid-response: {type(exc).__name__}"
            if ex.routed is not None:
                ex.routed.finish(502, ex.error)
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
        if ex.routed is not None:
            ex.routed.finish(upstream.status, None if upstream.status < 400 else f"HTTP {upstream.status}")
        # Every byte of the answer has been relayed: a client that hangs up as soon as it has
        # read `data: [DONE]`, before the terminating chunk, did not make the request fail.
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _relay_screened(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        headers: Mapping[str, str],
        screener: Screener,
        ex: Exchange,
    ) -> web.StreamResponse:
        """A whole (non-streamed) answer: read it all, screen it, then send it or a 400."""
        if ex.routed is not None:
            ex.routed.response_started(upstream.status, lower_dict(upstream.headers))
        chunks: list[bytes] = []
        async for chunk in upstream.content.iter_any():
            ex.response_bytes += len(chunk)
            if ex.routed is not None:
                ex.routed.response_data(chunk)
            chunks.append(chunk)
        ex.ttft_s = time.monotonic() - ex.started
        try:
            body = await screen_response(screener, b"".join(chunks), ex.model)
        except Blocked as blocked:
            if ex.routed is not None:
                ex.routed.finish(upstream.status, f"content_filter: {blocked.reason}")
            raise content_filtered(blocked.reason, "response") from None
        ex.status = upstream.status
        response = web.Response(status=upstream.status, reason=upstream.reason, body=body, headers=headers)
        if ex.routed is not None:
            ex.routed.finish(upstream.status, None)
        return response


def _model_entry(entry: Any, now: int) -> dict[str, Any]:
    """An OpenAI model-list item from whatever the core returns (a name, a dict, or an object)."""
    if isinstance(entry, str):
        return {
            "id": entry,
            "object": "model",
            "created": now,
            "owned_by": "inferpool",
            "root": entry,
            "parent": None,
        }
    if isinstance(entry, dict):
        return {"object": "model", "created": now, "owned_by": "inferpool", **entry}
    name = getattr(entry, "name", None) or getattr(entry, "id", str(entry))
    parent = getattr(entry, "parent", None)
    root = getattr(entry, "root", None) or name
    return {
        "id": name,
        "object": "model",
        "created": now,
        "owned_by": "inferpool",
        "root": root,
        "parent": parent,
    }
