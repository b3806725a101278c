"""/v1/responses conversations through `inferpool serve` in front of two `inferpool sim` replicas
that store answers as vLLM does with VLLM_ENABLE_RESPONSES_API_STORE=1: a follow-up naming its
previous_response_id must reach the replica that stored it (any other answers 404), so the
stored-response-filter keeps a whole chain on one replica even behind a round-robin picker, and
GET /v1/responses/{id} (no body) reaches it too.
Budget: ≈15 s on a 2-core box."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import orjson

from .conftest import K8S_GROUP, free_port, gateway_manifests, sim_endpoint, start_serve, start_sims

POOL = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool}
spec:
  selector: {matchLabels: {app: sim}}
  targetPorts: [{number: 8000}]
  endpointPickerRef: {name: pool-epp, port: {number: 9002}}
"""

# Round robin alternates replicas: without the filter every other follow-up would miss its store.
PROFILE = """
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


async def test_a_conversation_stays_on_the_replica_that_stored_it(spawn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ports = [free_port(), free_port()]
    start_sims(spawn, ports, "--speed", "20", env={"VLLM_ENABLE_RESPONSES_API_STORE": "1"})
    (tmp_path / "profile.yaml").write_text(PROFILE)
    manifests = gateway_manifests(POOL, free_port(), routes=[(None, "pool")], group=K8S_GROUP)
    endpoints = [sim_endpoint(p, f"sim-{i}") for i, p in enumerate(ports)]
    gw = start_serve(spawn, tmp_path, manifests, endpoints, "--profile", str(tmp_path / "profile.yaml"))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:

        async def turn(text: str, previous: str | None, stream: bool = False) -> tuple[str, str, int]:
            """(the replica that served, the answer's id, its input tokens)."""
            body = {"model": "tiny", "input": text, "max_output_tokens": 3, "stream": stream}
            if previous is not None:
                body["previous_response_id"] = previous
            async with s.post(f"{gw.url}/v1/responses", json=body) as resp:
                raw = await resp.read()
                assert resp.status == 200, raw
                served = resp.headers["x-gateway-destination-endpoint-served"]
            if stream:
                events = [orjson.loads(line[6:]) for line in raw.splitlines() if line.startswith(b"data: ")]
                answer = next(e["response"] for e in events if e["type"] == "response.completed")
            else:
                answer = orjson.loads(raw)
            return served, answer["id"], answer["usage"]["input_tokens"]

        served, rid, tokens = await turn("Tell me about granite.", None)
        chain = [served]
        for i in range(5):  # each follow-up continues the one before: the chain moves with it
            served, rid, longer = await turn(f"And then? ({i})", rid, stream=i % 2 == 1)
            assert longer > tokens  # the stored conversation was prepended, as vLLM does
            chain.append(served)
            tokens = longer
        assert len(set(chain)) == 1, chain
        # new conversations are placed by the picker as usual (round robin: both replicas)
        fresh = {(await turn(f"Something else {i}.", None))[0] for i in range(2)}
        assert fresh == {f"127.0.0.1:{p}" for p in ports}

        # a follow-up of an answer nobody stored: the replica's own 404, passed through unchanged
        body = {"model": "tiny", "input": "hi", "previous_response_id": "resp_unknown"}
        async with s.post(f"{gw.url}/v1/responses", json=body) as resp:
            assert resp.status == 404
            error = (await resp.json())["error"]
        assert error["message"] == "Response with id 'resp_unknown' not found."
        assert error["type"] == "invalid_request_error" and error["param"] == "response_id"

        # a stored answer fetched by id (no body): from the replica that stored it, every time
        for _ in range(4):  # round robin would alternate replicas (and half would answer 404)
            async with s.get(f"{gw.url}/v1/responses/{rid}") as resp:
                fetched = await resp.json()
                assert resp.status == 200, fetched
                assert resp.headers["x-gateway-destination-endpoint-served"] == chain[0]
            assert fetched["id"] == rid and fetched["status"] in ("completed", "incomplete")
        async with s.get(f"{gw.url}/v1/responses/resp_unknown") as resp:
            assert resp.status == 404
