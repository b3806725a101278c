"""What a data plane (built-in gateway or Envoy ext_proc) needs of the request core.

`Director` implements `PlaneCore`, `RoutedRequest` and `PassthroughRequest` implement `Routed`;
both data planes type against these protocols, so their tests can use small fakes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from inferpool.errors import InferenceError
from inferpool.records import HttpFacts, RequestRecord
from inferpool.request.body import ParsedBody
from inferpool.state import Endpoint


class Routed(Protocol):
    """One request on its way: where it may go, and its accounting until `finish()` records it."""

    @property
    def candidates(self) -> Sequence[Endpoint]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def incoming_model(self) -> str: ...
    @property
    def finished(self) -> bool: ...
    @property
    def response_complete(self) -> bool: ...
    @property
    def record(self) -> RequestRecord | None: ...
    def dispatched(self, endpoint: Endpoint) -> None: ...
    # P/D disaggregation: the ranked prefill endpoints (empty: the request is not split).
    @property
    def prefill_candidates(self) -> Sequence[Endpoint]: ...
    # The decoded request (model rewritten) both legs are built from; set when split.
    @property
    def pd_body(self) -> Mapping[str, Any] | None: ...
    def prefill_dispatched(self, endpoint: Endpoint) -> None: ...
    def prefill_finished(
        self,
        status: int,
        error: str | None = None,
        duration_s: float | None = None,
        *,
        fell_back: bool = False,
    ) -> None: ...
    # The decoder could not read the prefilled KV: the leg counts as fallen back after all.
    def prefill_transfer_failed(self, error: str) -> None: ...
    def response_started(self, status: int, content_type: str | None) -> None: ...
    def response_data(self, chunk: bytes) -> None: ...
    # Headers for the client's response chosen by scheduler plugins (session-affinity's token).
    def response_headers(self) -> Mapping[str, str]: ...
    # Whether a scheduler plugin must read this answer (the picker then asks Envoy for it).
    @property
    def needs_answer(self) -> bool: ...
    def finish(self, status: int, error: str | None = None) -> RequestRecord: ...


class PlaneCore(Protocol):
    """The request core as both data planes use it (request.Director)."""

    async def route_async(
        self,
        pool: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        subset: frozenset[str] | None = None,
        ttl_s: float | None = None,
        *,
        http: HttpFacts | None = None,
        arrived: float | None = None,
        parsed: ParsedBody | None = None,
    ) -> Routed: ...

    def refuse(
        self,
        request_id: str,
        err: InferenceError,
        *,
        http: HttpFacts | None = None,
        arrived: float | None = None,
        model: str = "",
        request_bytes: int = 0,
    ) -> RequestRecord: ...

    def passthrough(
        self,
        request_id: str,
        candidates: Sequence[Endpoint],
        body: bytes,
        *,
        http: HttpFacts | None = None,
        arrived: float | None = None,
        model: str = "",
    ) -> Routed: ...

    def route_without_body(
        self,
        pool: str,
        path: str,
        headers: Mapping[str, str],
        subset: frozenset[str] | None = None,
        *,
        http: HttpFacts | None = None,
        arrived: float | None = None,
    ) -> Routed: ...

    def served_models(self, pool: str) -> list[Any]: ...

    # Whether the pool's scheduler may need this request's answer (headers or body), known by path.
    def reads_answers(self, pool: str, path: str) -> bool: ...
