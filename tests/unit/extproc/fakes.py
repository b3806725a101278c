"""A recording stand-in for the request core, so the protocol is tested on its own."""

from __future__ import annotations

from dataclasses import dataclass, field

from inferpool.errors import InferenceError
from inferpool.state import Endpoint


@dataclass
class FakeRouted:
    candidates: list[Endpoint]
    body: bytes
    events: list[tuple[str, object]] = field(default_factory=list)
    answer_headers: dict[str, str] = field(default_factory=dict)  # what scheduler plugins would add
    prefill_candidates: list[Endpoint] = field(default_factory=list)  # P/D: the prefill pick first

    def prefill_dispatched(self, endpoint: Endpoint) -> None:
        self.events.append(("prefill_dispatched", endpoint.hostport))

    def prefill_finished(
        self,
        status: int,
        error: str | None = None,
        duration_s: float | None = None,
        *,
        fell_back: bool = False,
    ) -> None:
        self.events.append(("prefill_finished", (status, error, duration_s, fell_back)))

    def dispatched(self, endpoint: Endpoint) -> None:
        self.events.append(("dispatched", endpoint.hostport))

    def response_started(self, status: int, headers: dict[str, str]) -> None:
        self.events.append(("started", status))

    def response_data(self, chunk: bytes) -> None:
        self.events.append(("data", chunk))

    def response_headers(self) -> dict[str, str]:
        return self.answer_headers

    needs_answer: bool = False

    def finish(self, status: int, error: str | None = None) -> None:
        self.events.append(("finish", (status, error)))


@dataclass
class FakeRouter:
    """The core as the stream uses it (route_async); routes every request to `endpoints`, rewriting the body to `rewrite` when given."""

    endpoints: list[Endpoint]
    rewrite: bytes | None = None
    error: InferenceError | None = None
    calls: list[tuple[str, dict[str, str], bytes, frozenset[str] | None]] = field(default_factory=list)
    routed: list[FakeRouted] = field(default_factory=list)
    answer_headers: dict[str, str] = field(default_factory=dict)  # each routed request's response_headers()
    prefill: list[Endpoint] = field(default_factory=list)  # P/D: split every request, prefill here
    refused: list[tuple[str, InferenceError]] = field(default_factory=list)
    needs_answer: bool = False  # each routed request's: a scheduler plugin must read its answer

    def reads_answers(self, pool: str, path: str) -> bool:
        """As the Director answers: a plugin that sets answer headers or reads answers, or P/D."""
        return self.needs_answer or bool(self.answer_headers) or bool(self.prefill)

    def refuse(self, request_id: str, err: InferenceError, **facts: object) -> None:
        """A request refused before routing (e.g. a screened prompt): recorded, as the core would."""
        self.refused.append((request_id, err))

    async def route_async(
        self,
        pool: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        subset: frozenset[str] | None = None,
        ttl_s: float | None = None,
        **facts: object,
    ) -> FakeRouted:
        self.calls.append((path, headers, body, subset))
        if self.error is not None:
            raise self.error
        candidates = [e for e in self.endpoints if subset is None or e.hostport in subset]
        if not candidates:
            raise InferenceError(503, "no eligible endpoint in the subset")
        routed = FakeRouted(
            candidates,
            self.rewrite if self.rewrite is not None else body,
            answer_headers=self.answer_headers,
            prefill_candidates=list(self.prefill),
        )
        routed.needs_answer = self.needs_answer
        self.routed.append(routed)
        return routed

    def route_without_body(
        self,
        pool: str,
        path: str,
        headers: dict[str, str],
        subset: frozenset[str] | None = None,
        **facts: object,
    ) -> FakeRouted:
        """A request without a body: not scheduled, sent to the endpoints as they are."""
        self.calls.append((path, headers, b"", subset))
        candidates = [e for e in self.endpoints if subset is None or e.hostport in subset]
        if not candidates:
            raise InferenceError(503, "no eligible endpoint in the subset")
        routed = FakeRouted(candidates, b"")
        self.routed.append(routed)
        return routed


def endpoints(*ports: int) -> list[Endpoint]:
    return [Endpoint(f"e{p}", "10.0.0.1", p, "default/pool") for p in ports]


POOL = "default/pool"
