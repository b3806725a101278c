"""Gateway API route matching and precedence, on plain values."""

from __future__ import annotations

import random

import pytest

from inferpool.durations import parse_gateway_duration as parse_duration
from inferpool.gateway.routing import (
    BackendRef,
    HeaderModifier,
    HTTPRoute,
    Listener,
    ParentRef,
    PathMatch,
    RequestFacts,
    RouteMatch,
    RouteRule,
    RouteTable,
    ValueMatch,
    apply_header_modifier,
    choose_backend,
    hostname_matches,
)

GW = "default/gw"
POOL = BackendRef("InferencePool", "pool", "default")


def route(
    name: str,
    *rules: RouteRule,
    hostnames: tuple[str, ...] = (),
    parent: ParentRef | None = None,
    created: float = 0.0,
    namespace: str = "default",
) -> HTTPRoute:
    return HTTPRoute(namespace, name, (parent or ParentRef("gw", "default"),), hostnames, rules, created)


def rule(*matches: RouteMatch, backend: str = "pool") -> RouteRule:
    return RouteRule(matches or (RouteMatch(),), (BackendRef("InferencePool", backend, "default"),))


def req(
    path: str = "/", host: str = "example.com", method: str = "POST", headers=None, query=None
) -> RequestFacts:
    return RequestFacts(host, method, path, headers or {}, query or {})


def winner(table: RouteTable, r: RequestFacts, listener: str = "http") -> str | None:
    m = table.match(GW, listener, r)
    return None if m is None else m.rule.backends[0].name


LISTENER = Listener(GW, "http", 80)


def test_parse_duration() -> None:
    assert parse_duration("10s") == 10
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1h") == 3600
    with pytest.raises(ValueError):
        parse_duration("10")
    with pytest.raises(ValueError):
        parse_duration("1.5s")


def test_hostname_wildcards() -> None:
    assert hostname_matches("*.example.com", "a.example.com")
    assert hostname_matches("*.example.com", "a.b.example.com")
    assert not hostname_matches("*.example.com", "example.com")
    assert hostname_matches("Foo.Example.com", "foo.example.com")
    assert not hostname_matches("foo.example.com", "bar.example.com")


def test_prefix_is_element_wise() -> None:
    t = RouteTable([LISTENER], [route("r", rule(RouteMatch(PathMatch("PathPrefix", "/v1/")), backend="v1"))])
    assert winner(t, req("/v1")) == "v1"
    assert winner(t, req("/v1/completions")) == "v1"
    assert winner(t, req("/v1x/completions")) is None
    assert winner(t, req("/v2")) is None


def test_exact_beats_longer_prefix_and_longer_prefix_beats_shorter() -> None:
    t = RouteTable(
        [LISTENER],
        [
            route("a", rule(RouteMatch(PathMatch("PathPrefix", "/")), backend="root")),
            route("b", rule(RouteMatch(PathMatch("PathPrefix", "/v1/chat")), backend="chat")),
            route("c", rule(RouteMatch(PathMatch("Exact", "/v1/chat/completions")), backend="exact")),
        ],
    )
    assert winner(t, req("/v1/chat/completions")) == "exact"
    assert winner(t, req("/v1/chat/other")) == "chat"
    assert winner(t, req("/v1/completions")) == "root"


def test_regex_path() -> None:
    t = RouteTable(
        [LISTENER],
        [route("r", rule(RouteMatch(PathMatch("RegularExpression", r"/v\d+/models")), backend="re"))],
    )
    assert winner(t, req("/v1/models")) == "re"
    assert winner(t, req("/v1/models/x")) is None


def test_method_headers_query_precedence() -> None:
    base = PathMatch("PathPrefix", "/")
    t = RouteTable(
        [LISTENER],
        [
            route("a", rule(RouteMatch(base), backend="plain")),
            route("b", rule(RouteMatch(base, method="GET"), backend="get")),
            route("c", rule(RouteMatch(base, headers=(ValueMatch("X-Tier", "gold"),)), backend="gold")),
            route(
                "d",
                rule(
                    RouteMatch(
                        base,
                        headers=(ValueMatch("x-tier", "gold"), ValueMatch("x-r", "e.*", "RegularExpression")),
                    ),
                    backend="gold2",
                ),
            ),
            route("e", rule(RouteMatch(base, query=(ValueMatch("v", "2"),)), backend="q")),
        ],
    )
    assert winner(t, req("/x", method="POST")) == "plain"
    assert winner(t, req("/x", method="GET")) == "get"
    # method outranks header count
    assert winner(t, req("/x", method="GET", headers={"x-tier": "gold"})) == "get"
    assert winner(t, req("/x", headers={"x-tier": "gold"})) == "gold"
    assert winner(t, req("/x", headers={"x-tier": "gold", "x-r": "eu"})) == "gold2"
    assert winner(t, req("/x", headers={"x-tier": "Gold"})) == "plain"  # values are case-sensitive
    assert winner(t, req("/x", query={"v": "2"})) == "q"
    # headers outrank query params
    assert winner(t, req("/x", headers={"x-tier": "gold"}, query={"v": "2"})) == "gold"


def test_ties_go_to_oldest_then_name_then_rule_order() -> None:
    t = RouteTable(
        [LISTENER],
        [
            route("z", rule(backend="old"), created=1.0),
            route("a", rule(backend="new"), created=2.0),
        ],
    )
    assert winner(t, req()) == "old"
    t = RouteTable([LISTENER], [route("b", rule(backend="b")), route("a", rule(backend="a"))])
    assert winner(t, req()) == "a"
    t = RouteTable([LISTENER], [route("a", rule(backend="first"), rule(backend="second"))])
    assert winner(t, req()) == "first"


def test_hostname_precedence_and_listener_intersection() -> None:
    t = RouteTable(
        [LISTENER],
        [
            route("any", rule(backend="any")),
            route("wild", rule(backend="wild"), hostnames=("*.example.com",)),
            route("exact", rule(backend="exact"), hostnames=("api.example.com",)),
        ],
    )
    assert winner(t, req(host="api.example.com:8080")) == "exact"
    assert winner(t, req(host="web.example.com")) == "wild"
    assert winner(t, req(host="other.org")) == "any"

    narrow = Listener(GW, "http", 80, hostname="*.internal")
    t = RouteTable(
        [narrow],
        [
            route("x", rule(backend="x"), hostnames=("api.example.com",)),  # no overlap: not attached
            route("y", rule(backend="y"), hostnames=("a.internal",)),
        ],
    )
    assert t.routes_for(GW, "http") == [t.routes_for(GW, "http")[0]]
    assert winner(t, req(host="a.internal")) == "y"
    assert winner(t, req(host="api.example.com")) is None


def test_parent_ref_section_name_port_and_namespace() -> None:
    http = Listener(GW, "http", 80)
    other = Listener(GW, "admin", 81)
    only_admin = route("a", rule(backend="admin"), parent=ParentRef("gw", "default", section_name="admin"))
    by_port = route("p", rule(backend="port80"), parent=ParentRef("gw", "default", port=80))
    foreign = route("f", rule(backend="f"), namespace="other", parent=ParentRef("gw", "default"))
    t = RouteTable([http, other], [only_admin, by_port, foreign])
    assert winner(t, req(), "http") == "port80"
    assert winner(t, req(), "admin") == "admin"
    assert [r.name for r in t.routes_for(GW, "http")] == ["p"]  # other namespace needs allowedRoutes All
    t = RouteTable([Listener(GW, "http", 80, allow_all_namespaces=True)], [foreign])
    assert winner(t, req(), "http") == "f"
    assert (
        RouteTable([LISTENER], [route("g", rule(), parent=ParentRef("other-gw", "default"))]).match(
            GW, "http", req()
        )
        is None
    )


def test_weighted_backends() -> None:
    r = RouteRule(
        (RouteMatch(),),
        (
            BackendRef("InferencePool", "a", "default", weight=3),
            BackendRef("InferencePool", "b", "default", weight=1),
            BackendRef("Service", "never", "default", weight=0),
        ),
    )
    rng = random.Random(7)
    picks = [choose_backend(r, rng) for _ in range(4000)]
    names = [p.name for p in picks if p]
    assert "never" not in names
    assert 0.70 < names.count("a") / len(names) < 0.80
    assert choose_backend(RouteRule((RouteMatch(),), (BackendRef("Service", "z", "d", weight=0),))) is None
    assert choose_backend(RouteRule((RouteMatch(),), ())) is None


def test_header_modifier() -> None:
    out = apply_header_modifier(
        {"a": "1", "b": "2", "c": "3"},
        HeaderModifier(set=(("A", "x"),), add=(("B", "y"), ("D", "z")), remove=("C",)),
    )
    assert out == {"a": "x", "b": "2,y", "d": "z"}


def test_a_path_only_listener_answers_repeats_as_a_fresh_table_would() -> None:
    """Rules without header or query matches: the answer for a (host, method, path) is kept,
    and a kept answer (404s included) is the one a fresh table gives; the kept set is bounded."""
    from inferpool.gateway import routing

    routes = [
        route("a", rule(RouteMatch(PathMatch("PathPrefix", "/v1")), backend="v1")),
        route("b", rule(RouteMatch(PathMatch("Exact", "/v1/models"), method="GET"), backend="models")),
        route(
            "c",
            rule(RouteMatch(PathMatch("RegularExpression", r"/v\d+/x")), backend="re"),
            hostnames=("a.com",),
        ),
    ]
    table = RouteTable([LISTENER], routes)
    rng = random.Random(7)
    asked = [
        req(rng.choice(["/v1", "/v1/models", "/v2/x", "/v1/x", "/other"]), rng.choice(["a.com", "b.com"]),
            rng.choice(["GET", "POST"]))
        for _ in range(200)
    ]  # fmt: skip
    for r in asked:
        assert winner(table, r) == winner(RouteTable([LISTENER], routes), r)
    assert winner(table, req("/v2/x", "a.com")) == "re" and winner(table, req("/v2/x", "b.com")) is None
    for i in range(routing._MATCHES_KEPT + 10):
        table.match(GW, "http", req(f"/nowhere/{i}"))
    assert len(table._matched) <= routing._MATCHES_KEPT
