"""The single in-memory store of routing state, with change notifications."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from inferpool.state.endpoint import Endpoint
from inferpool.state.objects import ModelRewrite, ModelRoute, Objective, Pool, pool_key

ChangeKind = Literal["pool", "model", "objective", "rewrite", "endpoint"]


@dataclass(frozen=True)
class ChangeEvent:
    kind: ChangeKind
    key: str  # "namespace/name" of the object (for endpoints: "pool-key/endpoint-name")
    deleted: bool = False


Listener = Callable[[ChangeEvent], None]


class Datastore:
    """Pools, models, objectives, rewrites and endpoints, keyed by namespace/name.

    Single-threaded by design: every mutation happens on the event loop, so
    readers never see a half-applied change.
    """

    def __init__(self) -> None:
        self._pools: dict[str, Pool] = {}
        self._models: dict[str, ModelRoute] = {}
        # (pool key, model name) -> the route that serves it, made on the first lookup after a
        # change: a request resolves its model by it, and a multi-LoRA pool may declare hundreds
        self._model_index: dict[tuple[str, str], ModelRoute] | None = None
        self._objectives: dict[str, Objective] = {}
        self._rewrites: dict[str, ModelRewrite] = {}
        self._endpoints: dict[str, dict[str, Endpoint]] = {}
        # Per pool, its ready endpoints: one list until one is added or removed or changes
        # readiness, not one per request
        self._ready: dict[str, list[Endpoint]] = {}
        self._listeners: list[Listener] = []
        self.generation = 0  # bumped by every change, so callers can tell a stale snapshot

    # -- notifications -------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` on every change; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, kind: ChangeKind, key: str, deleted: bool = False) -> None:
        self.generation += 1
        event = ChangeEvent(kind, key, deleted)
        for listener in list(self._listeners):
            listener(event)

    # -- pools -----------------------------------------------------------------
    def upsert_pool(self, pool: Pool) -> None:
        self._pools[pool.key] = pool
        self._endpoints.setdefault(pool.key, {})
        self._emit("pool", pool.key)

    def delete_pool(self, key: str) -> None:
        if self._pools.pop(key, None) is not None:
            self._endpoints.pop(key, None)
            self._ready.pop(key, None)
            self._emit("pool", key, deleted=True)

    def pool(self, key: str) -> Pool | None:
        return self._pools.get(key)

    def find_pool(self, name: str, namespace: str = "default") -> Pool | None:
        return self._pools.get(pool_key(namespace, name))

    def pools(self) -> list[Pool]:
        return list(self._pools.values())

    # -- models ----------------------------------------------------------------
    def upsert_model(self, model: ModelRoute) -> None:
        self._models[pool_key(model.namespace, model.name)] = model
        self._model_index = None
        self._emit("model", pool_key(model.namespace, model.name))

    def delete_model(self, key: str) -> None:
        if self._models.pop(key, None) is not None:
            self._model_index = None
            self._emit("model", key, deleted=True)

    def models(self, pool: str | None = None) -> list[ModelRoute]:
        return [m for m in self._models.values() if pool is None or m.pool_key == pool]

    def model_for(self, pool: str, model_name: str) -> ModelRoute | None:
        """The InferenceModel serving `model_name` on `pool` (oldest wins on conflict, as upstream)."""
        index = self._model_index
        if index is None:
            index = self._model_index = {}
            for model in self._models.values():  # (in insertion order: the oldest is kept)
                index.setdefault((model.pool_key, model.model_name), model)
        return index.get((pool, model_name))

    # -- objectives and rewrites ----------------------------------------------
    def upsert_objective(self, objective: Objective) -> None:
        key = pool_key(objective.namespace, objective.name)
        self._objectives[key] = objective
        self._emit("objective", key)

    def delete_objective(self, key: str) -> None:
        if self._objectives.pop(key, None) is not None:
            self._emit("objective", key, deleted=True)

    def objective(self, pool: str, name: str) -> Objective | None:
        """The objective `name` if it applies to `pool` (by poolRef, poolRefs or poolSelector)."""
        known = self._pools.get(pool)
        objective = self._objectives.get(pool_key(pool.split("/", 1)[0], name))
        if known is None or objective is None or not objective.applies_to(known):
            return None
        return objective

    def objectives(self, pool: str | None = None) -> list[Objective]:
        if pool is None:
            return list(self._objectives.values())
        known = self._pools.get(pool)
        return [o for o in self._objectives.values() if known is not None and o.applies_to(known)]

    def upsert_rewrite(self, rewrite: ModelRewrite) -> None:
        key = pool_key(rewrite.namespace, rewrite.name)
        self._rewrites[key] = rewrite
        self._emit("rewrite", key)

    def delete_rewrite(self, key: str) -> None:
        if self._rewrites.pop(key, None) is not None:
            self._emit("rewrite", key, deleted=True)

    @property
    def has_rewrites(self) -> bool:
        return bool(self._rewrites)

    def rewrites(self, pool: str | None = None) -> list[ModelRewrite]:
        if pool is None or not self._rewrites:
            return list(self._rewrites.values())
        known = self._pools.get(pool)
        return [r for r in self._rewrites.values() if known is not None and r.applies_to(known)]

    # -- endpoints -------------------------------------------------------------
    def upsert_endpoint(self, endpoint: Endpoint) -> Endpoint:
        """Add an endpoint, or update address/labels of a known one (keeping its metrics and counts)."""
        endpoints = self._endpoints.setdefault(endpoint.pool, {})
        known = endpoints.get(endpoint.name)
        if known is None:
            endpoints[endpoint.name] = endpoint
            known = endpoint
        else:
            known.address, known.port = endpoint.address, endpoint.port
            known.labels, known.engine = endpoint.labels, endpoint.engine
        self._ready.pop(endpoint.pool, None)
        self._emit("endpoint", f"{endpoint.pool}/{endpoint.name}")
        return known

    def remove_endpoint(self, pool: str, name: str) -> None:
        if self._endpoints.get(pool, {}).pop(name, None) is not None:
            self._ready.pop(pool, None)
            self._emit("endpoint", f"{pool}/{name}", deleted=True)

    def set_ready(self, endpoint: Endpoint, ready: bool) -> None:
        """Whether an endpoint takes traffic (`scrape.Readiness` decides it); every write of it
        goes through here, so that the pool's ready list is made again."""
        if endpoint.ready != ready:
            endpoint.ready = ready
            self._ready.pop(endpoint.pool, None)

    def replace_endpoints(self, pool: str, endpoints: Iterable[Endpoint]) -> None:
        """Make `endpoints` the pool's whole set (a full resync from a source)."""
        wanted = {e.name: e for e in endpoints}
        for name in list(self._endpoints.get(pool, {})):
            if name not in wanted:
                self.remove_endpoint(pool, name)
        for endpoint in wanted.values():
            self.upsert_endpoint(endpoint)

    def endpoints(self, pool: str) -> list[Endpoint]:
        return list(self._endpoints.get(pool, {}).values())

    def ready_endpoints(self, pool: str) -> list[Endpoint]:
        """The pool's ready endpoints: the same list object until an endpoint of the pool is
        added or removed or changes readiness (`set_ready`), which callers must not modify."""
        ready = self._ready.get(pool)
        if ready is None:
            ready = [e for e in self._endpoints.get(pool, {}).values() if e.ready]
            if pool in self._endpoints:  # (an unknown pool's empty answer is not kept)
                self._ready[pool] = ready
        return ready

    def endpoint(self, pool: str, name: str) -> Endpoint | None:
        return self._endpoints.get(pool, {}).get(name)

    def all_endpoints(self) -> list[Endpoint]:
        return [e for endpoints in self._endpoints.values() for e in endpoints.values()]
