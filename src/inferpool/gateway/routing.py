"""Gateway API HTTPRoute matching: which rule of which route serves a request on a listener.

The rules follow the Gateway API spec (v1): routes attach to listeners through parentRefs
(sectionName / port narrow the attachment), hostnames intersect with the listener's, and
among matching rules precedence goes to the most specific hostname, then an Exact path,
then the longest prefix, then a method match, then the most header matches, then the most
query matches; remaining ties go to the oldest route, then namespace/name order, then rule
order. Nothing here knows HTTP servers, so it is tested on plain values.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import msgspec

PathType = Literal["PathPrefix", "Exact", "RegularExpression"]
ValueType = Literal["Exact", "RegularExpression"]
BackendKind = Literal["InferencePool", "Service"]


@dataclass(frozen=True)
class TLSConfig:
    """A listener's certificate and key, PEM-encoded (from a kubernetes.io/tls Secret)."""

    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class Listener:
    gateway: str  # gateway key "namespace/name"
    name: str
    port: int
    protocol: Literal["HTTP", "HTTPS"] = "HTTP"
    hostname: str | None = None
    tls: TLSConfig | None = None
    allow_all_namespaces: bool = False  # allowedRoutes.namespaces.from: All (default Same)

    @property
    def namespace(self) -> str:
        return self.gateway.split("/", 1)[0]


@dataclass(frozen=True)
class ParentRef:
    name: str
    namespace: str  # already defaulted to the route's namespace
    section_name: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class PathMatch:
    type: PathType = "PathPrefix"
    value: str = "/"


@dataclass(frozen=True)
class ValueMatch:
    """A header or query-parameter match (header names compare case-insensitively)."""

    name: str
    value: str
    type: ValueType = "Exact"


@dataclass(frozen=True)
class RouteMatch:
    path: PathMatch = PathMatch()
    headers: tuple[ValueMatch, ...] = ()
    query: tuple[ValueMatch, ...] = ()
    method: str | None = None


@dataclass(frozen=True)
class BackendRef:
    kind: BackendKind
    name: str
    namespace: str
    port: int | None = None
    weight: int = 1

    # cached: read several times by every request the rule serves
    @cached_property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @cached_property
    def label(self) -> str:
        """The backend as records name it: kind/namespace/name."""
        return f"{self.kind}/{self.key}"


@dataclass(frozen=True)
class HeaderModifier:
    """RequestHeaderModifier: set replaces, add appends, remove deletes (names case-insensitive)."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouteRule:
    matches: tuple[RouteMatch, ...] = (RouteMatch(),)
    backends: tuple[BackendRef, ...] = ()
    request_headers: HeaderModifier | None = None
    timeout_s: float | None = None  # timeouts.request: the whole exchange
    backend_timeout_s: float | None = None  # timeouts.backendRequest: each try


@dataclass(frozen=True)
class HTTPRoute:
    namespace: str
    name: str
    parents: tuple[ParentRef, ...]
    hostnames: tuple[str, ...] = ()
    rules: tuple[RouteRule, ...] = ()
    created: float = 0.0  # creation timestamp; manifests use file order

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# Structs: both are built per request, and faster to build than frozen dataclasses
class RequestFacts(msgspec.Struct, frozen=True):
    """The parts of a request that route matching reads."""

    host: str
    method: str
    path: str
    headers: Mapping[str, str] = msgspec.field(default_factory=dict)  # lower-cased names
    query: Mapping[str, str] = msgspec.field(default_factory=dict)


class Match(msgspec.Struct, frozen=True):
    route: HTTPRoute
    rule: RouteRule
    match: RouteMatch


def hostname_matches(pattern: str, host: str) -> bool:
    """`*.example.com` matches any name with at least one more label; others compare exactly."""
    host = host.lower().rstrip(".")
    pattern = pattern.lower()
    if pattern.startswith("*."):
        suffix = pattern[1:]
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == pattern


def _hostnames_intersect(a: str, b: str) -> str | None:
    """The more specific of two hostnames if they overlap (route vs listener), else None."""
    if a.startswith("*.") and b.startswith("*."):
        return a if a.endswith(b[1:]) else b if b.endswith(a[1:]) else None
    if a.startswith("*."):
        return b if hostname_matches(a, b) else None
    if b.startswith("*."):
        return a if hostname_matches(b, a) else None
    return a if a.lower() == b.lower() else None


def path_matches(match: PathMatch, path: str) -> bool:
    if match.type == "Exact":
        return path == match.value
    if match.type == "RegularExpression":
        return re.fullmatch(match.value, path) is not None
    prefix = match.value.rstrip("/")
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def _value_matches(match: ValueMatch, actual: str | None) -> bool:
    if actual is None:
        return False
    if match.type == "RegularExpression":
        return re.fullmatch(match.value, actual) is not None
    return actual == match.value


def _rule_match_applies(m: RouteMatch, req: RequestFacts) -> bool:
    if m.method is not None and m.method.upper() != req.method.upper():
        return False
    if not path_matches(m.path, req.path):
        return False
    if not all(_value_matches(h, req.headers.get(h.name.lower())) for h in m.headers):
        return False
    return all(_value_matches(q, req.query.get(q.name)) for q in m.query)


_PATH_RANK = {"Exact": 2, "RegularExpression": 1, "PathPrefix": 0}
_MATCHES_KEPT = 4096  # (host, method, path) answers kept per route table


@dataclass(frozen=True)
class _Candidate:
    route: HTTPRoute
    rule: RouteRule
    match: RouteMatch
    hostnames: tuple[str, ...]  # effective hostnames after intersecting with the listener; () = any
    static_rank: tuple[int, int, int, int, int]
    tiebreak: tuple[float, str, int, int]


def _attaches(route: HTTPRoute, listener: Listener) -> bool:
    gw_ns, gw_name = listener.gateway.split("/", 1)
    if not listener.allow_all_namespaces and route.namespace != gw_ns:
        return False
    for parent in route.parents:
        if (parent.namespace, parent.name) != (gw_ns, gw_name):
            continue
        if parent.section_name is not None and parent.section_name != listener.name:
            continue
        if parent.port is not None and parent.port != listener.port:
            continue
        return True
    return False


def _effective_hostnames(route: HTTPRoute, listener: Listener) -> tuple[str, ...] | None:
    """Hostnames the route serves on this listener; None means no overlap (route not attached)."""
    if not route.hostnames:
        return (listener.hostname,) if listener.hostname else ()
    if not listener.hostname:
        return route.hostnames
    both = tuple(h for h in (_hostnames_intersect(r, listener.hostname) for r in route.hostnames) if h)
    return both or None


class RouteTable:
    """Routes attached to each listener, ready to match requests against."""

    def __init__(self, listeners: list[Listener], routes: list[HTTPRoute]) -> None:
        self.listeners = {(lis.gateway, lis.name): lis for lis in listeners}
        self._candidates: dict[tuple[str, str], list[_Candidate]] = {}
        # Listeners whose rules match on host, method and path alone: their answer for a
        # (host, method, path) is kept, as nearly every request repeats one of a few of those.
        self._by_path: set[tuple[str, str]] = set()
        self._matched: dict[tuple[str, str, str, str, str], Match | None] = {}
        for lis in listeners:
            found: list[_Candidate] = []
            for route in routes:
                if not _attaches(route, lis):
                    continue
                hostnames = _effective_hostnames(route, lis)
                if hostnames is None:
                    continue
                for ri, rule in enumerate(route.rules):
                    for mi, m in enumerate(rule.matches or (RouteMatch(),)):
                        rank = (
                            _PATH_RANK[m.path.type],
                            len(m.path.value),
                            1 if m.method else 0,
                            len(m.headers),
                            len(m.query),
                        )
                        tiebreak = (route.created, route.key, ri, mi)
                        found.append(_Candidate(route, rule, m, hostnames, rank, tiebreak))
            self._candidates[(lis.gateway, lis.name)] = found
            if not any(c.match.headers or c.match.query for c in found):
                self._by_path.add((lis.gateway, lis.name))

    def routes_for(self, gateway: str, listener: str) -> list[HTTPRoute]:
        seen: dict[str, HTTPRoute] = {}
        for c in self._candidates.get((gateway, listener), []):
            seen.setdefault(c.route.key, c.route)
        return list(seen.values())

    def match(self, gateway: str, listener: str, req: RequestFacts) -> Match | None:
        """The winning rule match for `req` on the listener, or None (the gateway answers 404)."""
        if (gateway, listener) not in self._by_path:
            return self._match(gateway, listener, req)
        key = (gateway, listener, req.host, req.method, req.path)
        try:
            return self._matched[key]
        except KeyError:
            pass
        if len(self._matched) >= _MATCHES_KEPT:
            self._matched.clear()  # client-chosen paths (404s) must not grow it without bound
        found = self._matched[key] = self._match(gateway, listener, req)
        return found

    def _match(self, gateway: str, listener: str, req: RequestFacts) -> Match | None:
        host = req.host.rsplit(":", 1)[0] if not req.host.startswith("[") else req.host
        best: tuple[tuple[int, int, int, int, int, int, int], tuple[float, str, int, int]] | None = None
        winner: _Candidate | None = None
        for c in self._candidates.get((gateway, listener), []):
            host_rank = _host_rank(c.hostnames, host)
            if host_rank is None or not _rule_match_applies(c.match, req):
                continue
            key = ((*host_rank, *c.static_rank), c.tiebreak)
            if best is None or key[0] > best[0] or (key[0] == best[0] and key[1] < best[1]):
                best, winner = key, c
        return Match(winner.route, winner.rule, winner.match) if winner else None


def _host_rank(hostnames: tuple[str, ...], host: str) -> tuple[int, int] | None:
    """(non-wildcard hostname length, any hostname length) of the best matching hostname."""
    if not hostnames:
        return (0, 0)
    ranks = [(0 if h.startswith("*.") else len(h), len(h)) for h in hostnames if hostname_matches(h, host)]
    return max(ranks) if ranks else None


def choose_backend(rule: RouteRule, rng: random.Random | None = None) -> BackendRef | None:
    """A backendRef picked by weight (weight 0 never); None when no backend can take traffic."""
    live = [b for b in rule.backends if b.weight > 0]
    if not live:
        return None
    if len(live) == 1:
        return live[0]
    pick = (rng or random).uniform(0, sum(b.weight for b in live))
    for backend in live:
        pick -= backend.weight
        if pick <= 0:
            return backend
    return live[-1]


def apply_header_modifier(headers: dict[str, str], modifier: HeaderModifier) -> dict[str, str]:
    """A copy of `headers` (lower-cased names) with the modifier applied."""
    out = dict(headers)
    for name, value in modifier.set:
        out[name.lower()] = value
    for name, value in modifier.add:
        key = name.lower()
        out[key] = f"{out[key]},{value}" if key in out else value
    for name in modifier.remove:
        out.pop(name.lower(), None)
    return out
