"""One request through the built-in gateway: route match, tenancy, screening, the core, forwarding.

Each step is its own part (routing.py, tenancy.py, guard/, the request core, forward.py);
this module only puts them in order. Every request ends in exactly one record from the
core: refused before routing (`refuse`), a Service backend (`passthrough`), routed to an
InferencePool (`route_async`) or, without a body, sent to one of its endpoints at random
(`route_without_body`) all take the same forward-and-finish path.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp import HttpVersion11, web

from inferpool.errors import InferenceError
from inferpool.gateway.config import ProxyConfig
from inferpool.gateway.forward import Forwarder, Relay
from inferpool.gateway.headers import REQUEST_ID_HEADER, end_to_end_lower, hop_by_hop_and
from inferpool.gateway.routing import (
    BackendRef,
    Listener,
    Match,
    RequestFacts,
    RouteTable,
    apply_header_modifier,
    choose_backend,
)
from inferpool.gateway.tenancy import Tenancy, Tenant
from inferpool.guard.attach import GuardSet
from inferpool.guard.openai import (
    ACCEPT_ENCODING,
    IDENTITY,
    Blocked,
    content_filtered,
    fetches_stored_answer,
    screen_request,
    screens_prompt,
    screens_response,
)
from inferpool.observe.tracing import Tracing
from inferpool.records import HttpFacts, TraceContext, new_request_id
from inferpool.request.body import ParsedBody, RefusedBody, parse_body
from inferpool.request.disagg import PREFILLER_HEADER
from inferpool.request.plane import PlaneCore, Routed
from inferpool.state import Datastore, Endpoint

# A request waiting in flow control leaves the queue (503) this long before its route timeout
# would fire (504), so the answer and the core's record agree on why it failed.
_QUEUE_TTL_MARGIN_S = 0.01
_DROPPED_REQUEST_HEADERS = hop_by_hop_and("host", PREFILLER_HEADER)


# The Server header of the answers the gateway makes itself; aiohttp's default names its own
# and Python's versions, which a scanner reports as disclosure. Relayed answers keep the model
# server's.
SERVER_NAME = "inferpool"


def error_response(
    err: InferenceError, request_id: str | None = None, extra: Mapping[str, str] | None = None
) -> web.Response:
    headers = {**(extra or {}), **err.headers, "Server": SERVER_NAME}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return web.Response(
        status=err.status, body=err.to_json(), content_type="application/json", headers=headers
    )


class _Request:
    """The proxy's working state for one request (the record is the core's, made at the end)."""

    __slots__ = (
        "_http",
        "arrived",
        "backend",
        "body_bytes",
        "in_core",
        "listener",
        "method",
        "model",
        "path",
        "relay",
        "request_id",
        "route",
        "routed",
        "tenant",
        "trace",
    )

    def __init__(self, request_id: str, method: str, path: str, listener: str) -> None:
        self.request_id = request_id
        self.arrived = time.monotonic()
        self.method, self.path, self.listener = method, path, listener
        self.route: str | None = None
        self.backend: str | None = None
        self._http: HttpFacts | None = None
        self.trace: TraceContext | None = None  # set when tracing is on
        self.model = ""  # the model the client asked for
        self.body_bytes = 0
        self.tenant: Tenant | None = None
        self.routed: Routed | None = None
        self.in_core = False  # the core has seen it: from then on the core records how it ended
        self.relay = Relay(request_id, "")

    @property
    def http(self) -> HttpFacts:
        """The exchange's facts for the record; built once, when the core first needs them."""
        if self._http is None:
            self._http = HttpFacts(
                self.method, self.path, self.listener, self.route, self.backend, self.trace
            )
        return self._http


class Proxy:
    """The request handler shared by every listener."""

    def __init__(
        self,
        table: RouteTable,
        datastore: Datastore,
        core: PlaneCore,
        config: ProxyConfig,
        services: dict[str, list[tuple[str, int]]] | None = None,
        tenancy: Tenancy | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.table = table
        self.datastore = datastore
        self.core = core
        self.config = config
        self.services = services or {}
        self.tenancy = tenancy or Tenancy(None)
        self.tracing = tracing  # None: trace headers pass through untouched
        self.guards = GuardSet()  # GuardPolicies; replaced when the manifests change
        self.forwarder = Forwarder(config)
        self._rr: dict[str, itertools.count[int]] = {}
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def on_connect_error(self) -> Callable[[Endpoint], None] | None:
        """Passive ejection: told about an endpoint that refused a connection."""
        return self.forwarder.on_connect_error

    @on_connect_error.setter
    def on_connect_error(self, callback: Callable[[Endpoint], None] | None) -> None:
        self.forwarder.on_connect_error = callback

    async def start(self) -> None:
        await self.forwarder.start()

    async def close(self) -> None:
        await self.forwarder.close()

    async def drained(self, timeout_s: float) -> bool:
        """Wait until no request is in flight; False if `timeout_s` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except TimeoutError:
            return False

    def handler(self, listener: Listener) -> Callable[[web.BaseRequest], Any]:
        # A partial, not a wrapping coroutine: one await level less on every resumption
        return functools.partial(self.handle, listener, f"{listener.gateway}/{listener.name}")

    # -- one request ----------------------------------------------------------------
    async def handle(self, listener: Listener, name: str, request: web.BaseRequest) -> web.StreamResponse:
        request_id = request.headers.get(REQUEST_ID_HEADER) or new_request_id()
        state = _Request(request_id, request.method, request.path_qs, name)
        if self.tracing is not None:
            state.trace = self.tracing.join(request.headers)
        self.in_flight += 1
        self._idle.clear()
        try:
            return await self._handle(listener, request, state)
        except InferenceError as err:
            self._end(state, err.status, err.message, err)
            return error_response(err, request_id, state.relay.answer_headers)
        except (asyncio.CancelledError, ConnectionResetError):
            self._end(state, 499, "client disconnected")
            raise
        except Exception as exc:
            self._end(state, 500, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if state.tenant is not None and state.routed is not None and state.routed.record is not None:
                self.tenancy.charge(state.tenant, state.routed.record)
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    def _end(self, state: _Request, status: int, error: str, err: InferenceError | None = None) -> None:
        """The request failed: its routed request finishes, or the core records the refusal."""
        if state.routed is not None:
            state.routed.finish(status, error)
        elif not state.in_core:
            self.core.refuse(
                state.request_id,
                err or InferenceError(status, error),
                http=state.http,
                arrived=state.arrived,
                model=state.model,
                request_bytes=state.body_bytes,
            )

    async def _handle(
        self, listener: Listener, request: web.BaseRequest, state: _Request
    ) -> web.StreamResponse:
        # A client may not choose a P/D prefill endpoint: a sidecar in front of a decode server
        # would send the prompt wherever this header says (llm-d deletes it likewise).
        headers = end_to_end_lower(request.headers, _DROPPED_REQUEST_HEADERS)
        state.tenant = self.tenancy.identify(headers)
        match = self.table.match(
            listener.gateway,
            listener.name,
            RequestFacts(
                host=request.host or "",
                method=request.method,
                path=request.path,
                headers=headers,
                query=request.query,
            ),
        )
        if match is None:
            raise InferenceError(404, f"No route matches {request.method} {request.path} on this listener.")
        state.route = match.route.key
        if request.method == "GET" and request.path.rstrip("/").endswith("/v1/models"):
            pools = [b.key for b in match.rule.backends if b.kind == "InferencePool"]
            if pools:
                return self._models_response(pools, state.request_id)
        backend = choose_backend(match.rule)
        if backend is None:
            raise InferenceError(500, f"Route {match.route.key} has no backend that can take traffic.")
        state.backend = backend.label
        body = await self._read_body(request)
        state.body_bytes = len(body)
        parsed, model = _try_parse(body, request.path) if body else (None, "")
        state.model = state.relay.model = model
        if state.tenant is not None:
            self.tenancy.admit(state.tenant, state.model, headers)
            state.relay.answer_headers = state.tenant.answer_headers
        if self.guards and (body or fetches_stored_answer(request.path)):
            pool = backend.key if backend.kind == "InferencePool" else None
            if body:
                state.relay.screener = self.guards.for_request(
                    listener.gateway, match.route.key, state.model, pool
                )
            else:  # no prompt, but a model's stored answer: the policy for the model it names
                state.relay.screener_for = functools.partial(
                    self.guards.for_request, listener.gateway, match.route.key, pool=pool
                )
        if screens_prompt(state.relay.screener):
            assert state.relay.screener is not None
            try:
                decoded = parsed.data if parsed is not None else None
                screened = await screen_request(state.relay.screener, body, state.model, decoded)
            except Blocked as blocked:
                raise content_filtered(blocked.reason, "prompt") from None
            if screened is not body:
                body, parsed = screened, None  # redacted: the core decodes the new body
        if match.rule.request_headers is not None:
            headers = apply_header_modifier(headers, match.rule.request_headers)
        if screens_response(state.relay.screener) or state.relay.screener_for is not None:
            headers[ACCEPT_ENCODING] = IDENTITY  # (a compressed answer could not be screened)
        headers[REQUEST_ID_HEADER] = state.request_id
        if self.tracing is not None and state.http.trace is not None:
            self.tracing.propagate(state.http.trace, headers)
        total = match.rule.timeout_s
        if total is None:  # no HTTPRoute request timeout: no timer scope (≈2.7 µs a request)
            return await self._route_and_forward(request, match, backend, headers, body, parsed, state, None)
        try:
            async with asyncio.timeout(total) as scope:
                return await self._route_and_forward(
                    request, match, backend, headers, body, parsed, state, scope.when()
                )
        except TimeoutError:
            if state.relay.status == 0:
                raise InferenceError(
                    504, f"Request timed out after {total:g}s (HTTPRoute timeouts.request)."
                ) from None
            raise

    async def _route_and_forward(
        self,
        request: web.BaseRequest,
        match: Match,
        backend: BackendRef,
        headers: dict[str, str],
        body: bytes,
        parsed: ParsedBody | None,
        state: _Request,
        deadline: float | None,
    ) -> web.StreamResponse:
        """Route (the core for a pool; a Service backend's endpoints in turn), then forward."""
        if backend.kind != "InferencePool":
            state.routed = self.core.passthrough(
                state.request_id,
                self._service_endpoints(backend),
                body,
                http=state.http,
                arrived=state.arrived,
                model=state.model,
            )
        else:
            if self.datastore.pool(backend.key) is None:
                raise InferenceError(
                    500, f"InferencePool {backend.key} referenced by {match.route.key} does not exist."
                )
            state.in_core = True
            if not body:  # nothing to schedule on (GET /health, /metrics...): as the EPP does
                state.routed = self.core.route_without_body(
                    backend.key, request.path_qs, headers, http=state.http, arrived=state.arrived
                )
            else:
                ttl_s = None
                if deadline is not None:
                    ttl_s = max(0.0, deadline - asyncio.get_running_loop().time() - _QUEUE_TTL_MARGIN_S)
                state.routed = await self.core.route_async(
                    backend.key,
                    request.path_qs,
                    headers,
                    body,
                    ttl_s=ttl_s,
                    http=state.http,
                    arrived=state.arrived,
                    parsed=parsed,
                )
        return await self.forwarder.forward(
            request, state.routed, headers, match.rule.backend_timeout_s, state.relay
        )

    def _service_endpoints(self, backend: BackendRef) -> list[Endpoint]:
        addresses = self.services.get(backend.key, [])
        if not addresses:
            return []
        start = next(self._rr.setdefault(backend.key, itertools.count()))
        ordered = addresses[start % len(addresses) :] + addresses[: start % len(addresses)]
        return [Endpoint(f"{a}:{p}", a, p, backend.key) for a, p in ordered]

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
            headers={REQUEST_ID_HEADER: request_id, "Server": SERVER_NAME},
        )

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise InferenceError(
                413, f"Request body of {request.content_length} bytes exceeds the limit of {limit}."
            )
        if request.version == HttpVersion11 and "expect" in request.headers:
            await _continue(request)
        content = request.content
        if content.is_eof():
            # The whole body came with the headers (a typical JSON request): taken at once,
            # without an async iterator's coroutines and its StopAsyncIteration.
            body = content.read_nowait()
            if len(body) > limit:
                raise InferenceError(413, f"Request body exceeds the limit of {limit} bytes.")
            return body
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise InferenceError(413, f"Request body exceeds the limit of {limit} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)


async def _continue(request: web.BaseRequest) -> None:
    """Answer `Expect: 100-continue` as aiohttp's router would: the listeners run aiohttp's
    low-level server, which has none. Sent only when the body is wanted (after the route,
    the key and the declared size were checked), so a refused client need not send it."""
    expect = request.headers["expect"]
    if expect.lower() != "100-continue":
        raise InferenceError(417, f"Unknown Expect: {expect}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the answer's own bytes come after it


def _try_parse(body: bytes, path: str) -> tuple[ParsedBody | None, str]:
    """The body decoded once, for tenancy, screening and the core, and the model it names; None
    when malformed (the core answers that with vLLM's 400 if the request gets that far), with the
    model still named when the body names one as a string (tenancy checks it first)."""
    try:
        parsed = parse_body(body, path)
    except RefusedBody as exc:
        return None, exc.model
    except InferenceError:
        return None, ""
    return parsed, parsed.model


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
    card = getattr(entry, "card", None)
    if card is not None:
        # The server's own entry (owned_by, root = the adapter's source, max_model_len,
        # permission) under the client-facing name; `created` is the time of the call, as in vLLM.
        return {**card, "id": name, "created": now}
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
