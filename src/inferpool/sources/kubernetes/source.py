"""The Kubernetes source: one InferencePool, its models, objectives, rewrites and pods, watched.

What the upstream EPP's controllers do, as reflectors feeding the Datastore: the pool is
watched by name; InferenceModels / InferenceObjectives / InferenceModelRewrites in its
namespace are kept when they bind it (poolRef; for objectives and rewrites also poolRefs
and a poolSelector over the pool's labels), the objectives and rewrites in both the
llm-d.ai group and the former inference.networking.x-k8s.io one; the pods its selector matches become
endpoints (ready pods only, pod IP × target ports). When the pool's selector changes the
pod watch is restarted with the new label selector. GuardPolicies (inferpool.io) in the
pool's namespace are handed on whole, oldest first, to whoever screens with them, with the
namespace's HTTPRoutes (through which a policy on a route or a Gateway reaches the pool).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from kubernetes_asyncio import client

from inferpool.api.gateway import HTTPRoute
from inferpool.api.guard import GuardPolicy, pool_routes
from inferpool.api.inference import LLMD_GROUP
from inferpool.sources.kubernetes.objects import (
    V1_GROUP,
    X_GROUP,
    Object,
    label_selector,
    parse_guard_policy,
    parse_model,
    parse_objective,
    parse_pool,
    parse_rewrite,
    parse_route,
    pod_endpoints,
)
from inferpool.sources.kubernetes.reflector import Backoff, Reflector
from inferpool.sources.kubernetes.status import ModelStatusWriter, model_conflicts
from inferpool.state import Datastore, Endpoint, ModelRewrite, Objective, Pool
from inferpool.state.objects import pool_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KubernetesConfig:
    """Which pool to follow and how patiently."""

    pool_name: str
    namespace: str = "default"
    pool_group: str = V1_GROUP  # inference.networking.k8s.io (v1) or inference.networking.x-k8s.io (v1alpha2)
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 30.0
    watch_timeout_s: int = 300
    write_status: bool = True  # InferenceModel Accepted conditions (leader only when HA)
    # Other namespaces whose HTTPRoutes may send traffic to the pool (a backendRef across
    # namespaces, which a ReferenceGrant in the pool's allows): watched too, for GuardPolicies
    route_namespaces: tuple[str, ...] = ()


_DEPENDENT_KINDS = {
    "model": "inferencemodels",
    "objective": "inferenceobjectives",
    "rewrite": "inferencemodelrewrites",
}
# The API groups each dependent kind is watched in (all at v1alpha2). llm-d-router serves
# objectives and rewrites in llm-d.ai now; clusters that still have the Inference Extension's
# CRDs keep working. A group whose CRD is not installed answers 404 and is retried with backoff.
_GROUPS = {
    "model": (X_GROUP,),
    "objective": (LLMD_GROUP, X_GROUP),
    "rewrite": (LLMD_GROUP, X_GROUP),
}


GUARD_GROUP, GUARD_VERSION, GUARD_PLURAL = "inferpool.io", "v1alpha1", "guardpolicies"
ROUTE_GROUP, ROUTE_VERSION, ROUTE_PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"
# The namespace's GuardPolicies and HTTPRoutes, each oldest first
GuardPolicyListener = Callable[[list[GuardPolicy], list[HTTPRoute]], None]


class KubernetesSource:
    """Keeps a Datastore equal to one InferencePool's view of the cluster."""

    def __init__(
        self,
        datastore: Datastore,
        config: KubernetesConfig,
        api: client.ApiClient | None = None,
        *,
        may_write_status: Callable[[], bool] = lambda: True,
        on_guard_policies: GuardPolicyListener | None = None,
    ) -> None:
        self.datastore = datastore
        self.config = config
        self._api = api
        self.owns_api = api is None  # close the client on stop()
        self._objects: dict[str, dict[str, Object]] = {
            kind: {} for kind in (*_DEPENDENT_KINDS, "pod", "guard", "route")
        }
        self._pool_obj: Object | None = None
        self._pool: Pool | None = None
        self._owned: dict[str, set[str]] = {kind: set() for kind in _DEPENDENT_KINDS}
        self._reflectors: list[Reflector] = []
        self._pods: Reflector | None = None
        self._pods_selector: str | None = None
        self._status: ModelStatusWriter | None = None
        self._may_write_status = may_write_status
        self._on_guard_policies = on_guard_policies
        self._guard_policies: tuple[list[GuardPolicy], list[HTTPRoute]] | None = None  # as last handed on
        # GuardPolicies of the other namespaces of this pool's routes and their Gateways (policy
        # attachment keeps a policy beside its target: a shared Gateway's is in its own namespace)
        self._namespace_policies: dict[str, Reflector] = {}
        self._stopping: set[asyncio.Task[None]] = set()  # (those let go: held until stopped)

    @property
    def pool_key(self) -> str:
        return pool_key(self.config.namespace, self.config.pool_name)

    @property
    def api(self) -> client.ApiClient:
        assert self._api is not None, "start() first"
        return self._api

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        if self._api is None:
            from inferpool.sources.kubernetes.client import connect

            self._api = await connect()
        custom = client.CustomObjectsApi(self._api)
        ns = self.config.namespace
        version = "v1" if self.config.pool_group == V1_GROUP else "v1alpha2"
        pool_call = partial(
            custom.list_namespaced_custom_object,
            self.config.pool_group,
            version,
            ns,
            "inferencepools",
            field_selector=f"metadata.name={self.config.pool_name}",
        )
        self._reflectors.append(self._reflector("pool", pool_call, self._sync_pool, self._pool_event))
        for kind, plural in _DEPENDENT_KINDS.items():
            for group in _GROUPS[kind]:
                call = partial(custom.list_namespaced_custom_object, group, "v1alpha2", ns, plural)
                name = kind if group == X_GROUP else f"{kind}.{group}"
                sync, event = partial(self._sync, kind, group), partial(self._event, kind)
                self._reflectors.append(self._reflector(name, call, sync, event))
        if self._on_guard_policies is not None:
            call = partial(custom.list_namespaced_custom_object, GUARD_GROUP, GUARD_VERSION, ns, GUARD_PLURAL)
            sync = partial(self._sync, "guard", GUARD_GROUP, namespace=ns)
            self._reflectors.append(self._reflector("guardpolicy", call, sync, partial(self._event, "guard")))
            for route_ns in dict.fromkeys((ns, *self.config.route_namespaces)):
                call = partial(
                    custom.list_namespaced_custom_object, ROUTE_GROUP, ROUTE_VERSION, route_ns, ROUTE_PLURAL
                )
                sync = partial(self._sync, "route", ROUTE_GROUP, namespace=route_ns)
                name = "httproute" if route_ns == ns else f"httproute:{route_ns}"
                self._reflectors.append(self._reflector(name, call, sync, partial(self._event, "route")))
        if self.config.write_status:
            self._status = ModelStatusWriter(custom, ns)
        for reflector in self._reflectors:
            reflector.start()

    async def stop(self) -> None:
        if self._pods is not None:
            await self._pods.stop()
        for reflector in [*self._reflectors, *self._namespace_policies.values()]:
            await reflector.stop()
        if self._status is not None:
            await self._status.stop()
        if self.owns_api and self._api is not None:
            await self._api.close()

    async def wait_synced(self, timeout_s: float = 30.0) -> None:
        """Until the pool and (once the pool is known) its pods have been listed."""

        async def synced() -> None:
            await self._reflectors[0].synced.wait()
            if self._pods is not None:
                await self._pods.synced.wait()

        await asyncio.wait_for(synced(), timeout_s)

    def refresh_status(self) -> None:
        """Re-derive InferenceModel status (call on becoming leader: followers skipped writing it)."""
        self._apply_dependents("model")

    def reflectors(self) -> dict[str, Reflector]:
        named = {r.name: r for r in [*self._reflectors, *self._namespace_policies.values()]}
        if self._pods is not None:
            named[self._pods.name] = self._pods
        return named

    def _reflector(
        self,
        name: str,
        call: Any,
        on_sync: Callable[[list[Object]], None],
        on_event: Callable[[str, Object], None],
    ) -> Reflector:
        return Reflector(
            name,
            call,
            on_sync,
            on_event,
            backoff=Backoff(self.config.backoff_base_s, self.config.backoff_cap_s),
            watch_timeout_s=self.config.watch_timeout_s,
        )

    # -- the pool ----------------------------------------------------------------------
    def _sync_pool(self, items: list[Object]) -> None:
        mine = [o for o in items if (o.get("metadata") or {}).get("name") == self.config.pool_name]
        self._set_pool(mine[0] if mine else None)

    def _pool_event(self, kind: str, obj: Object) -> None:
        if (obj.get("metadata") or {}).get("name") != self.config.pool_name:
            return
        self._set_pool(None if kind == "DELETED" else obj)

    def _set_pool(self, obj: Object | None) -> None:
        pool = parse_pool(obj) if obj is not None else None
        if pool == self._pool:
            return
        previous, self._pool = self._pool, pool
        if pool is None:
            if previous is not None:
                self.datastore.delete_pool(previous.key)
            self._restart_pods(None)
            return
        self.datastore.upsert_pool(pool)
        self._apply_dependents()
        selector = label_selector(pool.selector)
        if selector != self._pods_selector:
            self._restart_pods(selector)
        else:
            self._apply_pods()

    def _restart_pods(self, selector: str | None) -> None:
        old, self._pods, self._pods_selector = self._pods, None, selector
        if old is not None:
            asyncio.get_running_loop().create_task(old.stop())
        self._objects["pod"] = {}
        if selector is None:
            return
        core = client.CoreV1Api(self.api)
        call = partial(core.list_namespaced_pod, self.config.namespace, label_selector=selector)
        self._pods = self._reflector(
            "pods", call, partial(self._sync, "pod", ""), partial(self._event, "pod")
        )
        self._pods.start()

    # -- models, objectives, rewrites, pods ---------------------------------------------
    def _sync(self, kind: str, group: str, items: list[Object], namespace: str | None = None) -> None:
        """A full list of `kind` in `group` (in `namespace`, for a kind listed in several):
        replaces what that reflector said before."""
        objects = self._objects[kind]
        for key in [
            k for k, o in objects.items() if _group(o) == group and namespace in (None, _namespace(o))
        ]:
            del objects[key]
        objects.update((_key(o), o) for o in items)
        self._applied(kind)

    def _event(self, kind: str, event: str, obj: Object) -> None:
        if event == "DELETED":
            self._objects[kind].pop(_key(obj), None)
        else:
            self._objects[kind][_key(obj)] = obj
        self._applied(kind)

    def _applied(self, kind: str) -> None:
        if kind == "pod":
            self._apply_pods()
        elif kind in ("guard", "route"):
            self._apply_guard_policies()
        else:
            self._apply_dependents(kind)

    def _apply_guard_policies(self) -> None:
        """The namespace's GuardPolicies and HTTPRoutes, oldest first (as manifests apply the
        first in file order among equals), handed on when either changed."""
        listener = self._on_guard_policies
        if listener is None:
            return
        routes = [r for r in map(parse_route, _oldest_first(self._objects["route"])) if r is not None]
        self._watch_policy_namespaces(routes)
        policies = [
            p for p in map(parse_guard_policy, _oldest_first(self._objects["guard"])) if p is not None
        ]
        if (policies, routes) != self._guard_policies:
            self._guard_policies = (policies, routes)
            listener(policies, routes)

    def _watch_policy_namespaces(self, routes: list[HTTPRoute]) -> None:
        """Watch the GuardPolicies of each other namespace where one of `routes` that sends
        traffic to this pool is (`route_namespaces`), or a Gateway it attaches to, and no longer
        those of a namespace none is (its policies are dropped): a policy is kept beside its
        target. The EPP needs list and watch on guardpolicies there (the Helm chart's
        `guardPolicyNamespaces` and `routeNamespaces`); without them the reflector says so and
        retries."""
        pool_ns = self.config.namespace
        leading = pool_routes(routes).get(self.pool_key, ())
        wanted = {key.split("/", 1)[0] for route in leading for key in (route.route, *route.gateways)} - {
            pool_ns
        }
        for namespace in [ns for ns in self._namespace_policies if ns not in wanted]:
            stopping = asyncio.get_running_loop().create_task(self._namespace_policies.pop(namespace).stop())
            self._stopping.add(stopping)
            stopping.add_done_callback(self._stopping.discard)
            guard = self._objects["guard"]
            for key in [k for k, o in guard.items() if _namespace(o) == namespace]:
                del guard[key]
        for namespace in sorted(wanted - set(self._namespace_policies)):
            custom = client.CustomObjectsApi(self.api)
            call = partial(
                custom.list_namespaced_custom_object, GUARD_GROUP, GUARD_VERSION, namespace, GUARD_PLURAL
            )
            sync = partial(self._sync, "guard", GUARD_GROUP, namespace=namespace)
            reflector = self._reflector(f"guardpolicy:{namespace}", call, sync, partial(self._event, "guard"))
            self._namespace_policies[namespace] = reflector
            reflector.start()

    def _references_pool(self, obj: Object) -> bool:
        """An InferenceModel names this pool in poolRef (objectives and rewrites: see `_binds_pool`)."""
        ref = (obj.get("spec") or {}).get("poolRef") or {}
        return bool(ref.get("name") == self.config.pool_name)

    def _may_bind_pool(self, obj: Object) -> bool:
        spec = obj.get("spec") or {}
        if spec.get("poolSelector") is not None:
            return True
        refs = [spec.get("poolRef") or {}, *(spec.get("poolRefs") or [])]
        return any(isinstance(ref, dict) and ref.get("name") == self.config.pool_name for ref in refs)

    def _binds_pool(self, parsed: Objective | ModelRewrite) -> bool:
        pool = self._pool
        return pool is not None and parsed.applies_to(pool)

    def _apply_dependents(self, only: str | None = None) -> None:
        store = self.datastore
        for kind in [only] if only else list(_DEPENDENT_KINDS):
            if kind != "model":
                self._apply_bound(kind)
                continue
            objects = [o for o in self._objects[kind].values() if self._references_pool(o)]
            if kind == "model":
                conflicts = model_conflicts(objects)
                if self._status is not None and self._may_write_status():
                    self._status.update(objects, conflicts)
                objects = [o for o in objects if _name(o) not in conflicts]
            parsers: dict[str, Callable[[Object], Any]] = {
                "model": parse_model,
                "objective": parse_objective,
                "rewrite": parse_rewrite,
            }
            current: dict[str, Any] = {pool_key(o.namespace, o.name): o for o in getattr(store, f"{kind}s")()}
            wanted: set[str] = set()
            for obj in objects:
                parsed = parsers[kind](obj)
                if parsed is None:
                    continue
                key = pool_key(parsed.namespace, parsed.name)
                wanted.add(key)
                if current.get(key) != parsed:
                    getattr(store, f"upsert_{kind}")(parsed)
            for key in self._owned[kind] - wanted:
                getattr(store, f"delete_{kind}")(key)
            self._owned[kind] = wanted

    def _apply_bound(self, kind: str) -> None:
        """Objectives or rewrites that bind the pool; of a name in both groups, llm-d.ai's is the one."""
        store = self.datastore
        parse = parse_objective if kind == "objective" else parse_rewrite
        by_name: dict[str, Object] = {}
        for obj in self._objects[kind].values():
            name = _name(obj)
            if name not in by_name or _group(obj) == LLMD_GROUP:
                by_name[name] = obj
        wanted: dict[str, Any] = {}
        for obj in by_name.values():
            if not self._may_bind_pool(obj):
                continue  # skip parsing (and warning about) what cannot concern this pool
            parsed = parse(obj)
            if parsed is not None and self._binds_pool(parsed):
                wanted[pool_key(parsed.namespace, parsed.name)] = parsed
        current: dict[str, Any] = {pool_key(o.namespace, o.name): o for o in getattr(store, f"{kind}s")()}
        for key, parsed in wanted.items():
            if current.get(key) != parsed:
                getattr(store, f"upsert_{kind}")(parsed)
        for key in self._owned[kind] - wanted.keys():
            getattr(store, f"delete_{kind}")(key)
        self._owned[kind] = set(wanted)

    def _apply_pods(self) -> None:
        pool = self._pool
        if pool is None:
            return
        wanted: dict[str, Endpoint] = {}
        for pod in self._objects["pod"].values():
            for endpoint in pod_endpoints(pod, pool):
                wanted[endpoint.name] = endpoint
        current = {e.name: e for e in self.datastore.endpoints(pool.key)}
        for name in current.keys() - wanted.keys():
            self.datastore.remove_endpoint(pool.key, name)
        for name, endpoint in wanted.items():
            known = current.get(name)
            if known is None or (known.address, known.port, known.labels) != (
                endpoint.address,
                endpoint.port,
                endpoint.labels,
            ):
                self.datastore.upsert_endpoint(endpoint)


def _oldest_first(objects: dict[str, Object]) -> list[Object]:
    return sorted(
        objects.values(),
        key=lambda o: (str((o.get("metadata") or {}).get("creationTimestamp") or ""), _name(o)),
    )


def _name(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _group(obj: Object) -> str:
    """The API group of an object ("" for the core group: pods, whose list items carry no apiVersion)."""
    api_version = str(obj.get("apiVersion") or "")
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def _namespace(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))


def _key(obj: Object) -> str:
    """Objects of one kind from several API groups (or, for GuardPolicies, namespaces): the
    group and namespace keep same-named ones apart."""
    return f"{_group(obj)}/{_namespace(obj)}/{_name(obj)}"
