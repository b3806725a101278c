"""Gateway API resources (`api.gateway`) turned into the routing table's plain values."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from inferpool.api import gateway as gw
from inferpool.gateway.routing import (
    BackendRef,
    HeaderModifier,
    HTTPRoute,
    Listener,
    ParentRef,
    PathMatch,
    RouteMatch,
    RouteRule,
    TLSConfig,
    ValueMatch,
)

TLSResolver = Callable[[str, str], TLSConfig | None]  # (namespace, secret name) -> cert/key


class ManifestError(ValueError):
    """A Gateway or HTTPRoute that the data plane cannot serve (e.g. a TLS Secret missing)."""


def listeners_of(gateway: gw.Gateway, tls: TLSResolver) -> list[Listener]:
    key = f"{gateway.namespace}/{gateway.name}"
    out: list[Listener] = []
    for lis in gateway.spec.listeners:
        cert: TLSConfig | None = None
        if lis.protocol == "HTTPS" and lis.tls is not None:
            ref = lis.tls.certificate_refs[0]
            cert = tls(ref.namespace or gateway.namespace, ref.name)
            if cert is None:
                raise ManifestError(
                    f"Gateway {key} listener {lis.name}: TLS Secret {ref.name!r} not found among the manifests"
                )
        extra = lis.model_extra or {}
        allowed = (extra.get("allowedRoutes") or {}).get("namespaces") or {}
        out.append(
            Listener(
                gateway=key,
                name=lis.name,
                port=lis.port,
                protocol=lis.protocol,
                hostname=lis.hostname,
                tls=cert,
                allow_all_namespaces=allowed.get("from", "Same") != "Same",
            )
        )
    return out


def _match(m: gw.RouteMatch) -> RouteMatch:
    path = PathMatch(m.path.type, m.path.value) if m.path is not None else PathMatch()
    return RouteMatch(
        path=path,
        headers=tuple(ValueMatch(h.name, h.value, h.type) for h in m.headers),
        query=tuple(ValueMatch(q.name, q.value, q.type) for q in m.query_params),
        method=m.method,
    )


def _modifier(filters: Sequence[gw.RouteFilter]) -> HeaderModifier | None:
    for f in filters:
        if f.type == "RequestHeaderModifier" and f.request_header_modifier is not None:
            mod = f.request_header_modifier
            return HeaderModifier(
                set=tuple((h.name, h.value) for h in mod.set),
                add=tuple((h.name, h.value) for h in mod.add),
                remove=tuple(mod.remove),
            )
    return None


def route_of(route: gw.HTTPRoute, order: int = 0) -> HTTPRoute:
    ns = route.namespace
    parents = tuple(
        ParentRef(p.name, p.namespace or ns, p.section_name, p.port)
        for p in route.spec.parent_refs
        if p.kind == "Gateway"
    )
    rules: list[RouteRule] = []
    for rule in route.spec.rules:
        backends = tuple(
            BackendRef(
                "InferencePool" if b.is_inference_pool else "Service",
                b.name,
                b.namespace or ns,
                b.port,
                b.weight,
            )
            for b in rule.backend_refs
        )
        timeouts = rule.timeouts
        rules.append(
            RouteRule(
                matches=tuple(_match(m) for m in rule.matches) or (RouteMatch(),),
                backends=backends,
                request_headers=_modifier(rule.filters),
                timeout_s=timeouts.request_s if timeouts else None,
                backend_timeout_s=timeouts.backend_request_s if timeouts else None,
            )
        )
    return HTTPRoute(ns, route.name, parents, tuple(route.spec.hostnames), tuple(rules), float(order))
