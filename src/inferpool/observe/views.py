"""JSON views of routing state that both the admin API (/api/state) and the dashboard show.

Kept apart from admin.py and dashboard.py because each of them draws endpoints this way and
admin.py builds on dashboard.py: a view they share must sit below both. Shape documented in
docs/gateway.md.
"""

from __future__ import annotations

import time
from typing import Any

from inferpool.state import Datastore, Endpoint


def endpoint_view(e: Endpoint) -> dict[str, Any]:
    m = e.metrics
    age = m.age()
    return {
        "name": e.name,
        "address": e.address,
        "port": e.port,
        "labels": e.labels,
        "engine": e.engine,
        "ready": e.ready,
        "in_flight": e.in_flight,
        "in_flight_tokens": e.in_flight_tokens,
        "metrics": {
            "waiting_queue_size": m.waiting_queue_size,
            "running_requests": m.running_requests,
            "kv_cache_usage": m.kv_cache_usage,
            "active_adapters": sorted(m.active_adapters),
            "waiting_adapters": sorted(m.waiting_adapters),
            "max_active_adapters": m.max_active_adapters,
            "loaded_adapters": None if m.loaded_adapters is None else sorted(m.loaded_adapters),
            "base_models": None if m.base_models is None else sorted(m.base_models),
            "age_s": None if age == float("inf") else round(age, 3),
        },
    }


def objectives_view(datastore: Datastore, pool: str) -> list[dict[str, Any]]:
    """What `x-gateway-inference-objective` may name for `pool`, and the priority each gives;
    highest priority first, the order flow control serves them in."""
    ranked = sorted(datastore.objectives(pool), key=lambda o: (-o.priority, o.name))
    return [{"name": o.name, "priority": o.priority} for o in ranked]


def state_view(datastore: Datastore) -> dict[str, Any]:
    pools = []
    for pool in datastore.pools():
        endpoints = datastore.endpoints(pool.key)
        pools.append(
            {
                "key": pool.key,
                "namespace": pool.namespace,
                "name": pool.name,
                "selector": pool.selector,
                "target_ports": pool.target_ports,
                "ready_endpoints": sum(1 for e in endpoints if e.ready),
                "endpoints": [endpoint_view(e) for e in endpoints],
                "models": [
                    {
                        "name": m.name,
                        "model_name": m.model_name,
                        "criticality": m.criticality.value if m.criticality else None,
                        "targets": [{"name": t.name, "weight": t.weight} for t in m.targets],
                    }
                    for m in datastore.models(pool.key)
                ],
                "objectives": objectives_view(datastore, pool.key),
            }
        )
    return {"time": time.time(), "pools": pools}
