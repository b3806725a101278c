"""session-affinity-scorer: keep a conversation on the endpoint that served it, as llm-d's scorer does.

Two strategies, llm-d-router's names and parameters:

- `encoded_endpoint_header` (default, stateless): the request header (`x-session-token`)
  carries base64 of the serving endpoint's `namespace/name`; the gateway writes it on every
  response (`response_headers`) and the client sends it back.
- `session_id` (stateful): the client names its session (header `x-session-id` by default,
  or a cookie); the scorer binds the session to the endpoint that served it and forgets a
  binding unused for `evictionTtlSeconds`. Nothing is written back.

Either way the pinned endpoint scores 1 and every other 0, but only while it is a candidate
(ready, inside the subset hint, through the filters) and unsaturated by admission's own
measure, max(waiting / queueThreshold, KV use / kvCacheThreshold) < 1 (defaults 5 and 0.8,
admission's). Otherwise every candidate scores 0, the other scorers place the request, and
the session moves to the endpoint that serves it (the new token, or a rebinding).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, model_validator

from inferpool.admission.saturation import SaturationConfig, SaturationDetector
from inferpool.scheduling.plugins.params import Params
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint

DEFAULT_TOKEN_HEADER = "x-session-token"
DEFAULT_SESSION_ID_HEADER = "x-session-id"
# Requests scored but not yet routed whose "the pinned endpoint was unusable" verdict we keep
# for `on_routed`; bounded because a request refused after scoring is never routed.
_PENDING_LIMIT = 4096


class EncodedEndpointHeaderConfig(Params):
    header: str = DEFAULT_TOKEN_HEADER


class SessionIdSource(Params):
    """Where a session id is read: one of a request header or a cookie of the Cookie header.

    llm-d reads a cookie through its `session-id-producer` plugin (`cookieName`) and an
    `attribute` source; inferpool has no request attributes, so the cookie is named here.
    """

    header: str = ""
    cookie: str = ""
    attribute: str = ""  # llm-d's; refused below with the reason
    producer: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> SessionIdSource:
        if self.attribute or self.producer:
            raise ValueError(
                "attribute/producer sources read llm-d request attributes, which inferpool does not "
                "have; use header or cookie"
            )
        if bool(self.header.strip()) == bool(self.cookie.strip()):
            raise ValueError("exactly one of header or cookie must be set")
        return self


class SessionIdConfig(Params):
    sources: list[SessionIdSource] = Field(
        default_factory=lambda: [SessionIdSource(header=DEFAULT_SESSION_ID_HEADER)]
    )
    eviction_ttl_seconds: float = Field(default=300.0, gt=0)
    eviction_sweep_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _default_sources(self) -> SessionIdConfig:
        if not self.sources:  # as llm-d: an empty list reads the default header
            object.__setattr__(self, "sources", [SessionIdSource(header=DEFAULT_SESSION_ID_HEADER)])
        return self


class SessionAffinityParams(Params):
    strategy: Literal["encoded_endpoint_header", "session_id"] = "encoded_endpoint_header"
    # Which profile's endpoint this instance pins (P/D: "prefill"); empty: the one that serves.
    profile_name: str = ""
    encoded_endpoint_header_config: EncodedEndpointHeaderConfig = Field(
        default_factory=EncodedEndpointHeaderConfig
    )
    session_id_config: SessionIdConfig = Field(default_factory=SessionIdConfig)
    # inferpool's: when the pinned endpoint counts as saturated (admission's formula and defaults).
    queue_threshold: float = Field(default=SaturationConfig.queue_threshold, gt=0)
    kv_cache_threshold: float = Field(default=SaturationConfig.kv_threshold, gt=0)


def endpoint_id(endpoint: Endpoint) -> str:
    """llm-d's endpoint ID: the namespaced name, `namespace/name` (the pool's namespace)."""
    namespace = endpoint.pool.split("/", 1)[0]
    return f"{namespace}/{endpoint.name}"


def encode_token(endpoint: Endpoint) -> str:
    return base64.b64encode(endpoint_id(endpoint).encode()).decode("ascii")


def decode_token(token: str) -> str:
    """The endpoint ID a token names; "" for an empty or undecodable token (no preference)."""
    if not token:
        return ""
    try:
        return base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""


def cookie_value(header: str, name: str) -> str:
    """The value of cookie `name` in a Cookie header ("a=1; b=2"), as llm-d parses it."""
    for pair in header.split(";"):
        key, sep, value = pair.strip().partition("=")
        if sep and key == name:
            return value
    return ""


@dataclass
class _Binding:
    endpoint: str  # endpoint ID
    last_seen: float


@dataclass
class SessionAffinityScorer:
    params: SessionAffinityParams = field(default_factory=SessionAffinityParams)
    name: str = "session-affinity-scorer"
    clock: Callable[[], float] = time.monotonic
    _bindings: dict[str, _Binding] = field(default_factory=dict)  # session id -> endpoint
    _unusable: OrderedDict[str, None] = field(default_factory=OrderedDict)  # request ids that may rebind
    _swept_at: float = 0.0

    def __post_init__(self) -> None:
        p = self.params
        self._token_header = p.encoded_endpoint_header_config.header.strip().lower() or DEFAULT_TOKEN_HEADER
        self._sessions = p.strategy == "session_id"
        self._load = SaturationDetector(
            SaturationConfig(queue_threshold=p.queue_threshold, kv_threshold=p.kv_cache_threshold)
        ).load_ratio

    # -- scoring -------------------------------------------------------------------------
    def score(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> dict[Endpoint, float]:
        return dict(zip(endpoints, self.score_column(req, endpoints), strict=True))

    def score_column(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[float]:
        pinned = self._pinned(req)
        scores = [0.0] * len(endpoints)
        if not pinned:
            return scores
        namespace, _, name = pinned.partition("/")
        prefix = namespace + "/"
        # llm-d names every endpoint `<pod>-rank-<i>`, inferpool a single-port pod by its name:
        # a token minted by llm-d's EPP for rank 0 still finds the pod here.
        pod = name.removesuffix("-rank-0")
        for i, endpoint in enumerate(endpoints):
            # endpoint_id(endpoint) == pinned, without building a string per candidate
            if (endpoint.name == name or endpoint.name == pod) and endpoint.pool.startswith(prefix):
                if self._load(endpoint) < 1.0:
                    scores[i] = 1.0
                    return scores
                break
        if self._sessions:  # absent or saturated: the endpoint this request goes to takes the session
            self._unusable[req.request_id] = None
            while len(self._unusable) > _PENDING_LIMIT:
                self._unusable.popitem(last=False)
        return scores

    def _pinned(self, req: SchedulingRequest) -> str:
        if not self._sessions:
            return decode_token(req.headers.get(self._token_header, ""))
        session = self.session_id(req.headers)
        binding = self._bindings.get(session) if session else None
        return binding.endpoint if binding is not None else ""

    def session_id(self, headers: Mapping[str, str]) -> str:
        """The first non-empty id among the configured sources, in order ("" when none)."""
        for source in self.params.session_id_config.sources:
            if source.header:
                value = headers.get(source.header.strip().lower(), "")
            else:
                value = cookie_value(headers.get("cookie", ""), source.cookie.strip())
            if value := value.strip():
                return value
        return ""

    # -- learning where sessions went (session_id) -----------------------------------------
    def on_routed(self, req: SchedulingRequest, endpoint: Endpoint) -> None:
        """llm-d's PreRequest: bind a new session; move a bound one only when its endpoint was unusable.

        Called with the endpoint the profile running this instance sent the request to (a
        retry calls it again with the next one).
        """
        if not self._sessions:
            return
        may_move = req.request_id in self._unusable
        self._unusable.pop(req.request_id, None)
        session = self.session_id(req.headers)
        if not session:
            return
        now = self.clock()
        self._sweep(now)
        picked = endpoint_id(endpoint)
        binding = self._bindings.get(session)
        if binding is None or binding.endpoint == picked or may_move:
            self._bindings[session] = _Binding(picked, now)

    def _sweep(self, now: float) -> None:
        config = self.params.session_id_config
        if now - self._swept_at < config.eviction_sweep_seconds:
            return
        self._swept_at = now
        oldest = now - config.eviction_ttl_seconds
        for session in [s for s, b in self._bindings.items() if b.last_seen < oldest]:
            del self._bindings[session]

    def bound_sessions(self) -> int:
        return len(self._bindings)

    # -- the response header (encoded_endpoint_header) --------------------------------------
    def response_headers(self, req: SchedulingRequest, picks: Mapping[str, Endpoint]) -> Mapping[str, str]:
        """The session token of the endpoint this instance pins, for the client to send back.

        `picks` maps a profile name to the endpoint it chose ("" is the endpoint that served).
        """
        if self._sessions:
            return {}
        endpoint = picks.get(self.params.profile_name)
        if endpoint is None:  # e.g. a prefill instance on a request that was not split
            return {}
        return {self._token_header: encode_token(endpoint)}
