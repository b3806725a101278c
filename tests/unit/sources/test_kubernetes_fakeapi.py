"""A small Kubernetes API server speaking the real list/watch protocol, for the Kubernetes source.

Shapes follow the real API: lists are `{kind: XList, apiVersion, metadata: {resourceVersion},
items}` (core items without kind/apiVersion, as the API server sends them); `?watch=1` is a
chunked stream of JSON lines `{type, object}` with ADDED / MODIFIED / DELETED, BOOKMARK
(`object` carrying only kind, apiVersion and metadata.resourceVersion) and ERROR carrying a
`Status` (`code: 410, reason: Expired, message: "too old resource version: X (Y)"`) when the
requested version was compacted away. A label-selected watch sees an object that stops
matching as DELETED, as the watch cache sends it. Only this module's own tests live here.
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiohttp import web

Object = dict[str, Any]

_KINDS = {
    "pods": ("Pod", "v1"),
    "inferencepools": ("InferencePool", None),
    "inferencemodels": ("InferenceModel", None),
    "inferenceobjectives": ("InferenceObjective", None),
    "inferencemodelrewrites": ("InferenceModelRewrite", None),
}


@dataclass
class _Change:
    rv: int
    collection: str
    type: str
    obj: Object
    old: Object | None = None


@dataclass
class FakeApiServer:
    """In-memory collections keyed by their URL path, with a change history for watches."""

    rv: int = 100
    collections: dict[str, dict[str, Object]] = field(default_factory=dict)
    history: list[_Change] = field(default_factory=list)
    compacted_below: int = 0  # watches from an older resourceVersion get 410 Gone
    fail_next: int = 0  # answer this many requests with 500
    forbidden: set[str] = field(default_factory=set)  # collections RBAC does not grant: 403
    requests: list[str] = field(default_factory=list)
    patches: list[tuple[str, Object]] = field(default_factory=list)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> user info
    allowed_users: set[str] = field(default_factory=set)
    reviews: int = 0
    url: str = ""
    _watches: set[web.StreamResponse] = field(default_factory=set)
    _changed: asyncio.Condition | None = None
    _runner: web.AppRunner | None = None

    # -- paths -----------------------------------------------------------------
    @staticmethod
    def pods(namespace: str = "default") -> str:
        return f"/api/v1/namespaces/{namespace}/pods"

    @staticmethod
    def custom(group: str, version: str, plural: str, namespace: str = "default") -> str:
        return f"/apis/{group}/{version}/namespaces/{namespace}/{plural}"

    # -- mutations (what kubectl would do) -------------------------------------
    def _bump(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, collection: str, obj: Object) -> Object:
        obj = copy.deepcopy(obj)
        items = self.collections.setdefault(collection, {})
        meta = obj.setdefault("metadata", {})
        name = meta["name"]
        old = items.get(name)
        rv = self._bump()
        meta["resourceVersion"] = str(rv)
        meta.setdefault("namespace", collection.split("/namespaces/")[1].split("/")[0])
        if old is None:
            meta.setdefault("creationTimestamp", f"2026-01-01T00:00:{rv % 60:02d}Z")
            meta.setdefault("uid", f"uid-{name}-{rv}")
            meta["generation"] = 1
        else:
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            meta["uid"] = old["metadata"]["uid"]
            meta["generation"] = old["metadata"]["generation"] + (old.get("spec") != obj.get("spec"))
        items[name] = obj
        self._record(_Change(rv, collection, "MODIFIED" if old else "ADDED", obj, old))
        return obj

    def delete(self, collection: str, name: str) -> None:
        obj = self.collections[collection].pop(name)
        obj = copy.deepcopy(obj)
        rv = self._bump()
        obj["metadata"]["resourceVersion"] = str(rv)
        self._record(_Change(rv, collection, "DELETED", obj, obj))

    def bookmark(self, collection: str) -> None:
        """What the API server sends about once a minute to watches that asked for bookmarks."""
        self._record(_Change(self._bump(), collection, "BOOKMARK", {}))

    def compact(self) -> None:
        """etcd compaction: every resourceVersion up to now is forgotten."""
        self.compacted_below = self.rv + 1

    async def drop_watches(self) -> None:
        """Cut every open watch (API server restart, load balancer timeout)."""
        for response in list(self._watches):
            transport = response._req.transport if response._req else None
            if transport is not None:
                transport.close()
        self._watches.clear()

    def watch_count(self) -> int:
        return len(self._watches)

    def _record(self, change: _Change) -> None:
        self.history.append(change)
        if self._changed is not None:
            cond = self._changed

            async def notify() -> None:
                async with cond:
                    cond.notify_all()

            asyncio.get_running_loop().create_task(notify())

    # -- serving ---------------------------------------------------------------
    async def start(self) -> str:
        self._changed = asyncio.Condition()
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/{ns}/{plural}", self._get)
        app.router.add_get("/apis/{group}/{version}/namespaces/{ns}/{plural}", self._get)
        app.router.add_patch("/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/status", self._patch)
        app.router.add_post("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases", self._lease_create)
        app.router.add_get("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}", self._lease_get)
        app.router.add_put("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}", self._lease_put)
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self._token_review)
        app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", self._access_review)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        await self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()

    def _kind(self, request: web.Request) -> tuple[str, str]:
        plural = request.match_info["plural"]
        kind, version = _KINDS.get(plural, (plural.capitalize(), None))
        if version is None:
            version = f"{request.match_info['group']}/{request.match_info['version']}"
        return kind, version

    def _status(self, code: int, reason: str, message: str) -> web.Response:
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
        return web.json_response(body, status=code)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if self.fail_next > 0:
            self.fail_next -= 1
            return self._status(500, "InternalError", "etcdserver: request timed out")
        collection = request.path
        if collection in self.forbidden:
            plural = request.match_info["plural"]
            return self._status(
                403, "Forbidden", f"{plural} is forbidden: User cannot list resource {plural!r}"
            )
        if request.query.get("watch") in ("1", "true", "True"):
            return await self._watch(request, collection)
        kind, api_version = self._kind(request)
        items = [
            _as_list_item(obj, kind)
            for obj in self.collections.get(collection, {}).values()
            if _matches(obj, request)
        ]
        return web.json_response(
            {
                "kind": f"{kind}List",
                "apiVersion": api_version,
                "metadata": {"resourceVersion": str(self.rv)},
                "items": items,
            }
        )

    async def _watch(self, request: web.Request, collection: str) -> web.StreamResponse:
        kind, api_version = self._kind(request)
        since = int(request.query.get("resourceVersion") or 0) or self.rv
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        bookmarks = request.query.get("allowWatchBookmarks") in ("true", "True", "1")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        if since < self.compacted_below:
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {since} ({self.compacted_below})",
                "reason": "Expired",
                "code": 410,
            }
            await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
            return response
        self._watches.add(response)
        assert self._changed is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        sent = since
        try:
            while loop.time() < deadline:
                for change in [c for c in self.history if c.rv > sent]:
                    sent = change.rv
                    if change.collection != collection:
                        continue
                    event = _event_for(change, request, kind, api_version, bookmarks)
                    if event is not None:
                        await response.write(json.dumps(event).encode() + b"\n")
                async with self._changed:
                    try:
                        await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - loop.time()))
                    except TimeoutError:
                        break
        except (ConnectionResetError, asyncio.CancelledError):
            return response
        finally:
            self._watches.discard(response)
        return response

    async def _patch(self, request: web.Request) -> web.Response:
        self.requests.append(f"PATCH {request.path}")
        if request.content_type != "application/merge-patch+json":
            return self._status(415, "UnsupportedMediaType", f"unsupported {request.content_type}")
        collection = request.path.rsplit("/", 2)[0]
        name = request.match_info["name"]
        current = self.collections.get(collection, {}).get(name)
        if current is None:
            return self._status(404, "NotFound", f"{name} not found")
        patch = await request.json()
        self.patches.append((name, patch))
        updated = copy.deepcopy(current)
        updated["status"] = {**(current.get("status") or {}), **patch.get("status", {})}
        return web.json_response(self.put(collection, updated))

    # -- leases: create (409 if it exists), get (404), update (409 on a stale resourceVersion)
    def _leases(self, request: web.Request) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{request.match_info['ns']}/leases"

    async def _lease_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        collection = self._leases(request)
        if body["metadata"]["name"] in self.collections.get(collection, {}):
            return self._status(409, "AlreadyExists", f"leases {body['metadata']['name']!r} already exists")
        return web.json_response(self.put(collection, body), status=201)

    async def _lease_get(self, request: web.Request) -> web.Response:
        lease = self.collections.get(self._leases(request), {}).get(request.match_info["name"])
        if lease is None:
            return self._status(404, "NotFound", f"leases {request.match_info['name']!r} not found")
        return web.json_response(lease)

    async def _lease_put(self, request: web.Request) -> web.Response:
        body = await request.json()
        collection = self._leases(request)
        current = self.collections.get(collection, {}).get(request.match_info["name"])
        if current is None:
            return self._status(404, "NotFound", "not found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return self._status(409, "Conflict", "the object has been modified; please apply your changes")
        return web.json_response(self.put(collection, body))

    async def _token_review(self, request: web.Request) -> web.Response:
        self.reviews += 1
        body = await request.json()
        user = self.tokens.get(body["spec"]["token"])
        status: dict[str, Any] = {"authenticated": user is not None}
        if user is not None:
            status["user"] = user
        return web.json_response({**body, "status": status}, status=201)

    async def _access_review(self, request: web.Request) -> web.Response:
        self.reviews += 1
        body = await request.json()
        spec = body["spec"]
        attrs = spec.get("nonResourceAttributes") or {}
        allowed = (
            spec.get("user") in self.allowed_users
            and attrs.get("path") == "/metrics"
            and attrs.get("verb") == "get"
        )
        return web.json_response({**body, "status": {"allowed": allowed}}, status=201)


def _as_list_item(obj: Object, kind: str) -> Object:
    item = copy.deepcopy(obj)
    if kind == "Pod":  # core list items come without kind/apiVersion
        item.pop("kind", None)
        item.pop("apiVersion", None)
    return item


def _selected(obj: Object | None, request: web.Request) -> bool:
    return obj is not None and _matches(obj, request)


def _event_for(
    change: _Change, request: web.Request, kind: str, api_version: str, bookmarks: bool
) -> Object | None:
    if change.type == "BOOKMARK":
        if not bookmarks:
            return None
        return {
            "type": "BOOKMARK",
            "object": {
                "kind": kind,
                "apiVersion": api_version,
                "metadata": {"resourceVersion": str(change.rv)},
            },
        }
    obj = {"kind": kind, "apiVersion": api_version, **change.obj}
    now, before = _selected(change.obj, request), _selected(change.old, request)
    if change.type == "DELETED":
        return {"type": "DELETED", "object": obj} if before else None
    if now and not before:
        return {"type": "ADDED", "object": obj}
    if before and not now:
        return {"type": "DELETED", "object": obj}
    return {"type": change.type, "object": obj} if now else None


def _matches(obj: Object, request: web.Request) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, request.query.get("labelSelector", "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    for term in filter(None, request.query.get("fieldSelector", "").split(",")):
        key, _, value = term.partition("=")
        if key == "metadata.name" and obj["metadata"]["name"] != value:
            return False
    return True


# -- object builders with the real API's shapes --------------------------------------

V1 = "inference.networking.k8s.io"
XK = "inference.networking.x-k8s.io"


def pod(name: str, ip: str, labels: dict[str, str], ready: bool = True, phase: str = "Running") -> Object:
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.32.0"}]},
        "status": {
            "phase": phase,
            "podIP": ip if phase == "Running" else None,
            "podIPs": [{"ip": ip}] if phase == "Running" else [],
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": "True" if ready else "False"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ],
        },
    }


def pool_v1(name: str, selector: dict[str, str], ports: list[int]) -> Object:
    return {
        "apiVersion": f"{V1}/v1",
        "kind": "InferencePool",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": selector},
            "targetPorts": [{"number": p} for p in ports],
            "endpointPickerRef": {
                "name": f"{name}-epp",
                "port": {"number": 9002},
                "failureMode": "FailClose",
            },
        },
    }


def pool_v1alpha2(name: str, selector: dict[str, str], port: int) -> Object:
    return {
        "apiVersion": f"{XK}/v1alpha2",
        "kind": "InferencePool",
        "metadata": {"name": name},
        "spec": {"selector": selector, "targetPortNumber": port, "extensionRef": {"name": f"{name}-epp"}},
    }


def inference_model(name: str, model_name: str, pool: str, criticality: str = "Standard") -> Object:
    return {
        "apiVersion": f"{XK}/v1alpha2",
        "kind": "InferenceModel",
        "metadata": {"name": name},
        "spec": {"modelName": model_name, "criticality": criticality, "poolRef": {"name": pool}},
    }


def test_fake_api_selector_filtering() -> None:
    """The fake's own rule: a label-selected watch sees a relabelled object as DELETED."""
    change = _Change(
        1, "/c", "MODIFIED", pod("a", "10.0.0.1", {"app": "x"}), pod("a", "10.0.0.1", {"app": "y"})
    )

    request = SimpleNamespace(query={"labelSelector": "app=y"})
    event = _event_for(change, request, "Pod", "v1", True)  # type: ignore[arg-type]
    assert event is not None and event["type"] == "DELETED"
