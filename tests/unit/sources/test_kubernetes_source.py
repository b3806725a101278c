"""Kubernetes source against a fake API server speaking the real list/watch protocol."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from test_kubernetes_fakeapi import V1, XK, FakeApiServer, inference_model, pod, pool_v1, pool_v1alpha2

from inferpool.sources.kubernetes import KubernetesConfig, KubernetesSource
from inferpool.sources.kubernetes.client import client_for, connect
from inferpool.state import Datastore

LABELS = {"app": "vllm-llama3-8b-instruct"}
POOLS_V1 = FakeApiServer.custom(V1, "v1", "inferencepools")
POOLS_X = FakeApiServer.custom(XK, "v1alpha2", "inferencepools")
MODELS = FakeApiServer.custom(XK, "v1alpha2", "inferencemodels")
OBJECTIVES = FakeApiServer.custom(XK, "v1alpha2", "inferenceobjectives")
REWRITES = FakeApiServer.custom(XK, "v1alpha2", "inferencemodelrewrites")
LLMD_OBJECTIVES = FakeApiServer.custom("llm-d.ai", "v1alpha2", "inferenceobjectives")
LLMD_REWRITES = FakeApiServer.custom("llm-d.ai", "v1alpha2", "inferencemodelrewrites")
PODS = FakeApiServer.pods()


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer()
    await server.start()
    yield server
    await server.stop()


async def started(
    api: FakeApiServer, group: str = V1, **overrides: object
) -> tuple[KubernetesSource, Datastore]:
    store = Datastore()
    config = KubernetesConfig(
        pool_name="vllm-llama3-8b-instruct", pool_group=group, backoff_base_s=0.01, backoff_cap_s=0.05
    )
    for key, value in overrides.items():
        object.__setattr__(config, key, value)
    source = KubernetesSource(store, config, client_for(api.url))
    source.owns_api = True
    await source.start()
    await source.wait_synced(10)
    return source, store


def addresses(store: Datastore) -> set[str]:
    return {e.hostport for e in store.endpoints("default/vllm-llama3-8b-instruct")}


async def test_initial_list_v1_pool_models_and_ready_pods(api: FakeApiServer) -> None:
    api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", LABELS, [8000, 8001]))
    api.put(POOLS_V1, pool_v1("other-pool", {"app": "other"}, [8000]))
    api.put(PODS, pod("vllm-a", "10.0.0.1", LABELS))
    api.put(PODS, pod("vllm-b", "10.0.0.2", LABELS))
    api.put(PODS, pod("vllm-starting", "10.0.0.3", LABELS, ready=False))
    api.put(PODS, pod("vllm-pending", "10.0.0.4", LABELS, phase="Pending"))
    api.put(PODS, pod("other", "10.0.0.9", {"app": "other"}))
    api.put(MODELS, inference_model("food-review", "food-review", "vllm-llama3-8b-instruct", "Critical"))
    api.put(MODELS, inference_model("elsewhere", "elsewhere", "other-pool"))
    source, store = await started(api)
    try:
        await eventually(lambda: len(addresses(store)) == 4 and len(store.models()) == 1)
        pool = store.find_pool("vllm-llama3-8b-instruct")
        assert pool is not None and pool.target_ports == [8000, 8001] and pool.api_version == f"{V1}/v1"
        assert [p.key for p in store.pools()] == ["default/vllm-llama3-8b-instruct"]
        assert addresses(store) == {"10.0.0.1:8000", "10.0.0.1:8001", "10.0.0.2:8000", "10.0.0.2:8001"}
        names = {e.name for e in store.endpoints(pool.key)}
        assert names == {"vllm-a-rank-0", "vllm-a-rank-1", "vllm-b-rank-0", "vllm-b-rank-1"}
        model = store.models()[0]
        assert (model.model_name, model.criticality) == ("food-review", "Critical")
        # the pod list asked the API server for the pool's selector, the pool list for its name
        assert any("labelSelector=app%3Dvllm-llama3-8b-instruct" in r for r in api.requests if "/pods" in r)
        assert any("fieldSelector=metadata.name%3Dvllm-llama3-8b-instruct" in r for r in api.requests)
    finally:
        await source.stop()


async def test_v1alpha2_pool(api: FakeApiServer) -> None:
    api.put(POOLS_X, pool_v1alpha2("vllm-llama3-8b-instruct", LABELS, 8000))
    api.put(PODS, pod("vllm-a", "10.0.0.1", LABELS))
    source, store = await started(api, group=XK)
    try:
        await eventually(lambda: addresses(store) == {"10.0.0.1:8000"})
        pool = store.find_pool("vllm-llama3-8b-instruct")
        assert pool is not None and pool.api_version == f"{XK}/v1alpha2"
        assert {e.name for e in store.endpoints(pool.key)} == {"vllm-a"}
    finally:
        await source.stop()


async def test_watch_events_pods_models_objectives_rewrites(api: FakeApiServer) -> None:
    api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", LABELS, [8000]))
    source, store = await started(api)
    try:
        api.put(PODS, pod("vllm-a", "10.0.0.1", LABELS))
        await eventually(lambda: addresses(store) == {"10.0.0.1:8000"})
        api.put(PODS, pod("vllm-a", "10.0.0.1", LABELS, ready=False))  # readiness probe fails
        await eventually(lambda: addresses(store) == set())
        api.put(PODS, pod("vllm-a", "10.0.0.7", LABELS))  # back, new IP
        await eventually(lambda: addresses(store) == {"10.0.0.7:8000"})
        api.put(PODS, pod("vllm-a", "10.0.0.7", {"app": "relabelled"}))  # leaves the selector
        await eventually(lambda: addresses(store) == set())

        api.put(MODELS, inference_model("m1", "m1", "vllm-llama3-8b-instruct"))
        objective = {
            "apiVersion": f"{XK}/v1alpha2",
            "kind": "InferenceObjective",
            "metadata": {"name": "batch"},
            "spec": {"priority": -1, "poolRef": {"name": "vllm-llama3-8b-instruct"}},
        }
        rewrite = {
            "apiVersion": f"{XK}/v1alpha2",
            "kind": "InferenceModelRewrite",
            "metadata": {"name": "canary"},
            "spec": {
                "poolRef": {"name": "vllm-llama3-8b-instruct"},
                "rules": [
                    {
                        "matches": [{"model": {"value": "m1"}}],
                        "targets": [
                            {"modelRewrite": "m1-v2", "weight": 10},
                            {"modelRewrite": "m1", "weight": 90},
                        ],
                    }
                ],
            },
        }
        api.put(OBJECTIVES, objective)
        api.put(REWRITES, rewrite)
        await eventually(
            lambda: len(store.models()) == 1 and len(store.objectives()) == 1 and len(store.rewrites()) == 1
        )
        assert store.objectives()[0].priority == -1
        assert [t.model for t in store.rewrites()[0].rules[0].targets] == ["m1-v2", "m1"]
        api.delete(MODELS, "m1")
        api.delete(OBJECTIVES, "batch")
        await eventually(lambda: not store.models() and not store.objectives())
        # an invalid object (weights on some targets only) is skipped, not fatal
        bad = inference_model("bad", "bad", "vllm-llama3-8b-instruct")
        bad["spec"]["targetModels"] = [{"name": "a", "weight": 1}, {"name": "b"}]
        api.put(MODELS, bad)
        api.put(MODELS, inference_model("good", "good", "vllm-llama3-8b-instruct"))
        await eventually(lambda: [m.name for m in store.models()] == ["good"])
    finally:
        await source.stop()


def _objective(group: str, name: str, priority: int, **binding: object) -> dict[str, object]:
    return {
        "apiVersion": f"{group}/v1alpha2",
        "kind": "InferenceObjective",
        "metadata": {"name": name},
        "spec": {"priority": priority, **binding},
    }


async def test_objectives_and_rewrites_of_both_groups_bind_by_refs_and_selector(api: FakeApiServer) -> None:
    pool = pool_v1("vllm-llama3-8b-instruct", LABELS, [8000])
    pool["metadata"]["labels"] = {"tier": "shared"}
    api.put(POOLS_V1, pool)
    api.put(
        LLMD_OBJECTIVES,
        _objective("llm-d.ai", "by-refs", 4, poolRefs=[{"name": "other"}, {"name": pool_name()}]),
    )
    api.put(
        LLMD_OBJECTIVES,
        _objective("llm-d.ai", "by-label", 6, poolSelector={"matchLabels": {"tier": "shared"}}),
    )
    api.put(LLMD_OBJECTIVES, _objective("llm-d.ai", "elsewhere", 9, poolRefs=[{"name": "other"}]))
    api.put(OBJECTIVES, _objective(XK, "old-group", -2, poolRef={"name": pool_name()}))
    api.put(OBJECTIVES, _objective(XK, "by-label", 1, poolRef={"name": pool_name()}))  # llm-d.ai's wins
    rewrite = {
        "apiVersion": "llm-d.ai/v1alpha2",
        "kind": "InferenceModelRewrite",
        "metadata": {"name": "rw"},
        "spec": {
            "poolSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["shared"]}]},
            "rules": [],
        },
    }
    api.put(LLMD_REWRITES, rewrite)
    source, store = await started(api)
    key = f"default/{pool_name()}"
    try:
        await eventually(lambda: len(store.objectives(key)) == 3 and len(store.rewrites(key)) == 1)
        assert {(o.name, o.priority) for o in store.objectives(key)} == {
            ("by-refs", 4),
            ("by-label", 6),
            ("old-group", -2),
        }
        assert {
            "objective.llm-d.ai",
            "rewrite.llm-d.ai",
            "objective",
            "rewrite",
        } <= source.reflectors().keys()
        # The pool loses the label: what only the selector bound lets go of it. The name
        # "by-label" stays llm-d.ai's, so the old group's object of that name does not step in.
        pool["metadata"]["labels"] = {"tier": "dedicated"}
        api.put(POOLS_V1, pool)
        await eventually(lambda: store.rewrites(key) == [])
        assert {(o.name, o.priority) for o in store.objectives(key)} == {("by-refs", 4), ("old-group", -2)}
        # Deleting the llm-d.ai object hands the name to the old group's.
        api.delete(LLMD_OBJECTIVES, "by-label")
        await eventually(lambda: store.objective(key, "by-label") is not None)
        by_label = store.objective(key, "by-label")
        assert by_label is not None and by_label.priority == 1
        api.delete(LLMD_OBJECTIVES, "by-refs")
        await eventually(lambda: store.objective(key, "by-refs") is None)
    finally:
        await source.stop()


def pool_name() -> str:
    return "vllm-llama3-8b-instruct"


async def test_pool_selector_change_restarts_pod_watch(api: FakeApiServer) -> None:
    api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", LABELS, [8000]))
    api.put(PODS, pod("old", "10.0.0.1", LABELS))
    api.put(PODS, pod("new", "10.0.0.2", {"app": "vllm-v2"}))
    source, store = await started(api)
    try:
        await eventually(lambda: addresses(store) == {"10.0.0.1:8000"})
        api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", {"app": "vllm-v2"}, [8000]))
        await eventually(lambda: addresses(store) == {"10.0.0.2:8000"})
        assert any("labelSelector=app%3Dvllm-v2" in r for r in api.requests)
        api.delete(POOLS_V1, "vllm-llama3-8b-instruct")
        await eventually(lambda: store.find_pool("vllm-llama3-8b-instruct") is None)
    finally:
        await source.stop()


async def test_reconnect_resumes_from_last_resource_version(api: FakeApiServer) -> None:
    """A dropped watch resumes where it left off: changes made while disconnected all arrive, no relist."""
    api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", LABELS, [8000]))
    api.put(PODS, pod("vllm-a", "10.0.0.1", LABELS))
    source, store = await started(api)
    try:
        await eventually(lambda: addresses(store) == {"10.0.0.1:8000"} and api.watch_count() >= 5)
        pods = source.reflectors()["pods"]
        lists_before = pods.stats.lists
        last_rv = pods.resource_version
        api.fail_next = 3  # the API server is briefly unavailable too
        await api.drop_watches()
        api.put(PODS, pod("vllm-b", "10.0.0.2", LABELS))
        api.put(PODS, pod("vllm-c", "10.0.0.3", LABELS))
        api.delete(PODS, "vllm-a")
        await eventually(lambda: addresses(store) == {"10.0.0.2:8000", "10.0.0.3:8000"})
        assert pods.stats.lists == lists_before  # resumed, not relisted
        assert any(f"resourceVersion={last_rv}" in r and "watch=true" in r.lower() for r in api.requests)
        assert sum(r.stats.errors for r in source.reflectors().values()) >= 1
    finally:
        await source.stop()


async def test_bookmark_moves_the_resume_point(api: FakeApiServer) -> None:
    api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", LABELS, [8000]))
    source, store = await started(api)
    try:
        await eventually(lambda: api.watch_count() >= 5)
        pods = source.reflectors()["pods"]
        api.put(PODS, pod("unrelated", "10.0.0.5", {"app": "other"}))  # filtered out of our watch
        api.bookmark(PODS)
        await eventually(lambda: pods.resource_version == str(api.rv))
        assert addresses(store) == set()
    finally:
        await source.stop()


async def test_410_gone_relists(api: FakeApiServer) -> None:
    """History compacted while disconnected: the watch gets ERROR 410 Expired and the source relists."""
    api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", LABELS, [8000]))
    api.put(PODS, pod("vllm-a", "10.0.0.1", LABELS))
    api.put(PODS, pod("vllm-b", "10.0.0.2", LABELS))
    source, store = await started(api)
    try:
        await eventually(lambda: len(addresses(store)) == 2 and api.watch_count() >= 5)
        pods = source.reflectors()["pods"]
        await api.drop_watches()
        api.delete(PODS, "vllm-a")
        api.put(PODS, pod("vllm-c", "10.0.0.3", LABELS))
        api.compact()
        await eventually(lambda: addresses(store) == {"10.0.0.2:8000", "10.0.0.3:8000"})
        assert pods.stats.gone >= 1 and pods.stats.lists >= 2
    finally:
        await source.stop()


async def test_model_name_in_use_oldest_wins_and_status_written(api: FakeApiServer) -> None:
    api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", LABELS, [8000]))
    api.put(MODELS, inference_model("first", "shared", "vllm-llama3-8b-instruct"))
    api.put(MODELS, inference_model("second", "shared", "vllm-llama3-8b-instruct"))
    api.put(MODELS, inference_model("alone", "alone", "vllm-llama3-8b-instruct"))
    source, store = await started(api)
    try:
        await eventually(lambda: sorted(m.name for m in store.models()) == ["alone", "first"])

        def condition(name: str) -> dict[str, object] | None:
            obj = api.collections[MODELS][name]
            conditions = (obj.get("status") or {}).get("conditions") or []
            return conditions[0] if conditions else None

        await eventually(lambda: all(condition(n) is not None for n in ("first", "second", "alone")))
        assert condition("first")["reason"] == "Accepted" and condition("first")["status"] == "True"  # type: ignore[index]
        loser = condition("second")
        assert loser is not None and (loser["status"], loser["reason"]) == ("False", "ModelNameInUse")
        assert "first" in str(loser["message"])
        # our own status writes come back as MODIFIED events and must settle, not loop
        writes = len(api.patches)
        await asyncio.sleep(0.3)
        assert len(api.patches) == writes == 3
        # the winner goes away: the other takes the name and becomes Accepted
        api.delete(MODELS, "first")
        await eventually(lambda: sorted(m.name for m in store.models()) == ["alone", "second"])
        await eventually(lambda: (condition("second") or {}).get("reason") == "Accepted")
    finally:
        await source.stop()


async def test_followers_do_not_write_status(api: FakeApiServer) -> None:
    api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", LABELS, [8000]))
    api.put(MODELS, inference_model("first", "shared", "vllm-llama3-8b-instruct"))
    store = Datastore()
    config = KubernetesConfig(pool_name="vllm-llama3-8b-instruct")
    source = KubernetesSource(store, config, client_for(api.url), may_write_status=lambda: False)
    await source.start()
    try:
        await source.wait_synced(10)
        await eventually(lambda: len(store.models()) == 1)
        await asyncio.sleep(0.2)
        assert api.patches == []
    finally:
        await source.stop()
        await source.api.close()


async def test_kinds_rbac_forbids_are_left_out_and_logged_once(
    api: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    # upstream's inferencepool chart grants pools, inference.networking.x-k8s.io objectives and
    # pods: the pool syncs and routes, the other kinds are said to be forbidden, once each
    api.forbidden = {MODELS, REWRITES, LLMD_OBJECTIVES, LLMD_REWRITES}
    api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", LABELS, [8000]))
    api.put(PODS, pod("vllm-a", "10.0.0.1", LABELS))
    caplog.set_level(logging.DEBUG, logger="inferpool.sources.kubernetes.reflector")
    source, store = await started(api)
    try:
        await eventually(lambda: addresses(store) == {"10.0.0.1:8000"})
        refused = {
            n: r for n, r in source.reflectors().items() if n.startswith(("model", "rewrite", "objective."))
        }
        await eventually(lambda: all(r.stats.errors >= 3 for r in refused.values()))
    finally:
        await source.stop()
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(r.getMessage().split(":")[0] for r in warned) == sorted(refused)
    assert all(
        "forbidden: the ServiceAccount's RBAC does not grant list/watch on it" in r.getMessage()
        for r in warned
    )


async def test_a_failure_after_the_api_answered_again_is_news_again(
    api: FakeApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", LABELS, [8000]))
    caplog.set_level(logging.DEBUG, logger="inferpool.sources.kubernetes.reflector")
    source, _store = await started(api, watch_timeout_s=1)  # each watch ends (normally) after 1 s
    try:
        objectives = source.reflectors()["objective"]

        def warnings() -> int:
            return sum(
                1
                for r in caplog.records
                if r.levelno == logging.WARNING and r.getMessage().startswith("objective: watch: HTTP 403")
            )

        async def revoke_then_grant() -> None:
            """RBAC taken away under a running watch: the next watch (from its version: no relist)
            is refused; then given back: the watch answers again."""
            errors, watches = objectives.stats.errors, objectives.stats.watches
            api.forbidden = {OBJECTIVES}
            await eventually(lambda: objectives.stats.errors >= errors + 3)
            api.forbidden = set()
            await eventually(lambda: objectives.stats.watches > watches)

        await eventually(lambda: objectives.stats.watches >= 1)
        await revoke_then_grant()
        assert warnings() == 1, [
            r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
        ]  # three failures, one warning
        assert any("objective: watching again" in r.getMessage() for r in caplog.records)
        await revoke_then_grant()
        assert warnings() == 2  # the same failure after the watch answered is news again
    finally:
        await source.stop()


async def test_a_missing_kubeconfig_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such file"):
        await connect(str(tmp_path / "nope.yaml"))


GUARD_POLICIES = FakeApiServer.custom("inferpool.io", "v1alpha1", "guardpolicies")


def _guard_policy(
    name: str, created: str, namespace: str = "default", target: tuple[str, str] | None = None, **spec: object
) -> dict[str, object]:
    """A GuardPolicy on the pool, or on `target` (a Gateway API kind and name)."""
    ref = (
        {"group": V1, "kind": "InferencePool", "name": "vllm-llama3-8b-instruct"}
        if target is None
        else {"group": "gateway.networking.k8s.io", "kind": target[0], "name": target[1]}
    )
    return {
        "apiVersion": "inferpool.io/v1alpha1",
        "kind": "GuardPolicy",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": {"targetRefs": [ref], "checks": [{"type": "Secrets", "action": "Block"}], **spec},
    }


async def test_guard_policies_of_the_namespace_are_handed_on_oldest_first(api: FakeApiServer) -> None:
    """`inferpool epp --pool-name` screens with the GuardPolicies in its pool's namespace (the
    core builds its GuardSet from what the source hands on, with the namespace's HTTPRoutes,
    through which a policy on a route or a Gateway reaches the pool); an invalid one is skipped."""
    api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", LABELS, [8000]))
    api.put(GUARD_POLICIES, _guard_policy("newer", "2026-12-02T10:00:00Z"))
    api.put(GUARD_POLICIES, _guard_policy("older", "2026-12-01T10:00:00Z"))
    seen: list[tuple[list[str], list[str]]] = []
    store = Datastore()
    config = KubernetesConfig(pool_name="vllm-llama3-8b-instruct", backoff_base_s=0.01, backoff_cap_s=0.05)
    source = KubernetesSource(
        store,
        config,
        client_for(api.url),
        on_guard_policies=lambda ps, rs: seen.append(([p.name for p in ps], [r.name for r in rs])),
    )
    source.owns_api = True
    await source.start()
    try:
        await eventually(lambda: bool(seen) and seen[-1] == (["older", "newer"], []))
        api.put(GUARD_POLICIES, _guard_policy("broken", "2026-12-03T10:00:00Z", checks=[{"type": "Nope"}]))
        api.put(GUARD_POLICIES, _guard_policy("third", "2026-12-04T10:00:00Z"))
        await eventually(lambda: seen[-1][0] == ["older", "newer", "third"])
        api.delete(GUARD_POLICIES, "older")
        await eventually(lambda: seen[-1][0] == ["newer", "third"])
        assert not any("broken" in names for names, _ in seen)  # the invalid one never handed on
        api.put(ROUTES, _route("llm-route", "inference-gateway", "vllm-llama3-8b-instruct"))
        await eventually(lambda: seen[-1] == (["newer", "third"], ["llm-route"]))
    finally:
        await source.stop()


ROUTES = FakeApiServer.custom("gateway.networking.k8s.io", "v1", "httproutes")


def _route(name: str, gateway: str, pool: str) -> dict[str, object]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-12-01T10:00:00Z"},
        "spec": {
            "parentRefs": [{"name": gateway}],
            "rules": [{"backendRefs": [{"group": V1, "kind": "InferencePool", "name": pool}]}],
        },
    }


def test_a_policy_on_the_gateway_reaches_the_pool_through_its_route() -> None:
    """The core's GuardSet in Kubernetes mode: a policy that targets the Gateway (the docs'
    example) screens the pool an HTTPRoute of that Gateway sends traffic to, as with manifests."""
    from inferpool.api.gateway import HTTPRoute
    from inferpool.api.guard import GuardPolicy
    from inferpool.request.core import Core, CoreConfig

    on_gateway = _guard_policy("screening", "2026-12-01T10:00:00Z", target=("Gateway", "inference-gateway"))
    policy = GuardPolicy.model_validate(on_gateway)
    route = HTTPRoute.model_validate(_route("llm-route", "inference-gateway", "vllm-llama3-8b-instruct"))
    core = Core(CoreConfig(scheduler="default"))
    pool = "default/vllm-llama3-8b-instruct"
    core._guard_policies_changed(pool, [policy], [])
    assert core.guards.for_pool(pool, "m") is None  # no route leads there: it reaches no pool
    core._guard_policies_changed(pool, [policy], [route])
    screener = core.guards.for_pool(pool, "m")
    assert screener is not None and screener.config.name == "default/screening"


async def test_a_shared_gateways_policies_are_watched_in_its_namespace(api: FakeApiServer) -> None:
    """A Gateway shared by several namespaces lives in its own, and so do the GuardPolicies on it
    (policy attachment keeps a policy beside its target). The EPP watches the namespace of each
    Gateway its pool's HTTPRoutes attach to, and stops when no route does; the core then screens
    the pool with that policy. Before, only the pool's namespace was watched: the policy never
    reached the EPP."""
    from inferpool.api.gateway import HTTPRoute
    from inferpool.api.guard import GuardPolicy
    from inferpool.request.core import Core, CoreConfig

    shared = FakeApiServer.custom("inferpool.io", "v1alpha1", "guardpolicies", namespace="gateway-system")
    on_gateway = _guard_policy(
        "shared-screening", "2026-12-01T10:00:00Z", "gateway-system", target=("Gateway", "shared-gateway")
    )
    api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", LABELS, [8000]))
    api.put(shared, on_gateway)
    seen: list[tuple[list[GuardPolicy], list[HTTPRoute]]] = []
    config = KubernetesConfig(pool_name="vllm-llama3-8b-instruct", backoff_base_s=0.01, backoff_cap_s=0.05)
    source = KubernetesSource(
        Datastore(), config, client_for(api.url), on_guard_policies=lambda ps, rs: seen.append((ps, rs))
    )
    source.owns_api = True
    await source.start()
    try:
        await eventually(lambda: bool(seen))
        assert "guardpolicy:gateway-system" not in source.reflectors()  # no route leads there yet
        route = _route("llm-route", "shared-gateway", "vllm-llama3-8b-instruct")
        route["spec"]["parentRefs"] = [{"name": "shared-gateway", "namespace": "gateway-system"}]  # type: ignore[index]
        api.put(ROUTES, route)
        await eventually(lambda: [p.name for p in seen[-1][0]] == ["shared-screening"])
        policies, routes = seen[-1]
        core = Core(CoreConfig(scheduler="default"))
        pool = "default/vllm-llama3-8b-instruct"
        core._guard_policies_changed(pool, policies, routes)
        screener = core.guards.for_pool(pool, "m")
        assert screener is not None and screener.config.name == "gateway-system/shared-screening"
        api.delete(ROUTES, "llm-route")  # no route to the shared Gateway: its namespace is let go
        await eventually(lambda: seen[-1] == ([], []))
        assert "guardpolicy:gateway-system" not in source.reflectors()
    finally:
        await source.stop()


async def test_a_route_from_another_namespace_brings_its_policies(api: FakeApiServer) -> None:
    """`--route-namespace team-a`: an HTTPRoute there that sends traffic to the pool (a backendRef
    across namespaces) is watched, and the GuardPolicies of its namespace with it (one on the
    route is kept beside it); without the flag the route is not seen."""
    from inferpool.api.gateway import HTTPRoute
    from inferpool.api.guard import GuardPolicy
    from inferpool.request.core import Core, CoreConfig

    team_routes = FakeApiServer.custom("gateway.networking.k8s.io", "v1", "httproutes", namespace="team-a")
    team_policies = FakeApiServer.custom("inferpool.io", "v1alpha1", "guardpolicies", namespace="team-a")
    route = _route("team-route", "team-gateway", "vllm-llama3-8b-instruct")
    route["metadata"]["namespace"] = "team-a"  # type: ignore[index]
    route["spec"]["rules"][0]["backendRefs"][0]["namespace"] = "default"  # type: ignore[index]
    on_route = _guard_policy(
        "team-screening", "2026-12-01T10:00:00Z", "team-a", target=("HTTPRoute", "team-route")
    )
    api.put(POOLS_V1, pool_v1("vllm-llama3-8b-instruct", LABELS, [8000]))
    api.put(team_routes, route)
    api.put(team_policies, on_route)

    async def policies_seen(route_namespaces: tuple[str, ...]) -> tuple[list[GuardPolicy], list[HTTPRoute]]:
        """What the source hands on once every reflector it started has listed."""
        seen: list[tuple[list[GuardPolicy], list[HTTPRoute]]] = []
        config = KubernetesConfig(
            pool_name="vllm-llama3-8b-instruct",
            backoff_base_s=0.01,
            backoff_cap_s=0.05,
            route_namespaces=route_namespaces,
        )
        source = KubernetesSource(
            Datastore(), config, client_for(api.url), on_guard_policies=lambda ps, rs: seen.append((ps, rs))
        )
        source.owns_api = True
        await source.start()
        try:
            # (a namespace's policies are watched from when its route is listed: that reflector is
            # among them by the time the route's has synced)
            await eventually(lambda: all(r.synced.is_set() for r in source.reflectors().values()))
            return seen[-1]
        finally:
            await source.stop()

    assert await policies_seen(()) == ([], [])  # the route, and so its policy, not seen
    policies, routes = await policies_seen(("team-a",))
    assert [p.name for p in policies] == ["team-screening"] and [r.name for r in routes] == ["team-route"]
    core = Core(CoreConfig(scheduler="default"))
    pool = "default/vllm-llama3-8b-instruct"
    core._guard_policies_changed(pool, policies, routes)
    screener = core.guards.for_pool(pool, "m")
    assert screener is not None and screener.config.name == "team-a/team-screening"
