"""Two real vLLM servers publish KV-cache events behind `inferpool serve --profile precise-prefix`.

The gateway is told nothing about the events: it finds each server's publisher from the
server's own announcement (GET /kv_event_sources: an ipc path on this host). A prompt warmed on
one server behind the gateway's back is routed there; after that server's cache is reset
(POST /reset_prefix_cache, VLLM_SERVER_DEV_MODE=1) the index holds none of the prompt's blocks
for it; warmed on the other server, the prompt is routed there. Each step asserts the index
itself (the admin API's /api/kv-index), not only where the prompt went, so chance cannot pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from inferpool.scheduling.config import builtin_config_text
from realvllm.conftest import Assets
from realvllm.helpers import get, post_json, wait_for
from realvllm.servers import BASE_MODEL, Process, VLLMServer, free_port, inferpool_argv
from realvllm.test_real_gateway import Gateway, manifests

SENTENCE = "The quick brown fox jumps over the lazy dog. "
EVENTS_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def precise_gateway(
    vllm_pair: list[VLLMServer], assets: Assets, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("precise-gateway")
    # the built-in precise-prefix profile, tokenizing as the engine does: the model's tokenizer.json;
    # new prompt text of 256 characters or more is tokenized in a worker thread (step 4 below)
    profile = builtin_config_text("precise-prefix").replace(
        "- type: precise-prefix-cache-scorer\n",
        "- type: precise-prefix-cache-scorer\n  parameters:\n"
        f"    tokenizer: {assets.model / 'tokenizer.json'}\n    tokenizeOffLoopChars: 256\n",
        1,
    )
    (work / "precise-prefix.yaml").write_text(profile)
    listener, admin = free_port(), free_port()
    (work / "all.yaml").write_text(yaml.safe_dump_all(manifests(listener)))
    endpoints = {  # no kv-events label: the gateway must learn the publishers from the servers
        "endpoints": [
            {"address": "127.0.0.1", "port": s.port, "name": f"vllm-{i}", "labels": {"app": "tiny"}}
            for i, s in enumerate(vllm_pair)
        ]
    }
    (work / "endpoints.yaml").write_text(yaml.safe_dump(endpoints))
    argv = inferpool_argv(
        "serve", "--no-auth", "-f", str(work / "all.yaml"), "--endpoints", str(work / "endpoints.yaml"),
        "--admin-port", str(admin), "--profile", str(work / "precise-prefix.yaml"),
    )  # fmt: skip
    proc = Process("inferpool-serve-precise", argv, work / "serve.log")
    gw = Gateway(proc, f"http://127.0.0.1:{listener}", f"http://127.0.0.1:{admin}")
    proc.start()
    try:
        proc.wait_http(f"{gw.admin}/readyz", 120)
        wanted = sorted(s.kv_events_endpoint for s in vllm_pair)
        wait_for(lambda: sorted(r["source"] for r in streams(gw)) == wanted, 60, "both publishers discovered")
        yield gw
    finally:
        proc.stop()


def streams(gw: Gateway) -> list[dict[str, Any]]:
    return list(json.loads(get(f"{gw.admin}/api/kv-index"))["streams"])


def held(gw: Gateway, prompt: str) -> dict[str, dict[str, Any]]:
    """Per endpoint name: the index's count of the prompt's leading blocks (held, confirmed)."""
    status, body, _ = post_json(f"{gw.admin}/api/kv-index", {"model": BASE_MODEL, "prompt": prompt})
    assert status == 200, body
    return {row["endpoint"]: row for row in json.loads(body)["endpoints"]}


def complete(url: str, prompt: str) -> tuple[str | None, dict[str, Any]]:
    status, body, headers = post_json(
        f"{url}/v1/completions", {"model": BASE_MODEL, "prompt": prompt, "max_tokens": 2, "ignore_eos": True}
    )
    assert status == 200, body
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get("x-gateway-destination-endpoint-served"), json.loads(body)


def last_decision(gw: Gateway) -> dict[str, Any]:
    return dict(json.loads(get(f"{gw.admin}/api/decisions"))["decisions"][-1])


def test_routing_follows_each_servers_own_kv_events(
    precise_gateway: Gateway, vllm_pair: list[VLLMServer]
) -> None:
    gw = precise_gateway
    names = {f"vllm-{i}": s for i, s in enumerate(vllm_pair)}

    # Both streams live: a SUB that joins a PUB misses the first batches, so warm each server
    # directly with throwaway prompts until its stream has delivered one.
    for i, server in enumerate(vllm_pair):
        source = server.kv_events_endpoint
        for attempt in range(30):
            if any(r["source"] == source and r["live"] for r in streams(gw)):
                break
            complete(server.url, f"warm-up {i}.{attempt} " + SENTENCE * 20)
        else:
            raise AssertionError(f"no KV events from {source}: {streams(gw)}")

    prompt = "Tenant alpha asks about foxes. " + SENTENCE * 26  # ≈ 3 full blocks of vLLM's 128 on CPU

    def index_says(holder: str | None, text: str = prompt) -> bool:
        rows = held(gw, text)
        blocks = rows["vllm-0"]["prompt_blocks"]
        assert blocks, rows  # the prompt spans full blocks at the servers' block size
        return all(
            row["confirmed"] == (blocks if name == holder else 0) and (name == holder or row["held"] == 0)
            for name, row in rows.items()
        )

    # 1. warmed on vllm-0 behind the gateway's back: the index says vllm-0 holds it, and it goes there
    complete(names["vllm-0"].url, prompt)
    wait_for(lambda: index_says("vllm-0"), EVENTS_TIMEOUT_S, "vllm-0's events to index the prompt")
    served, _ = complete(gw.url, prompt)
    assert served == f"127.0.0.1:{names['vllm-0'].port}"
    scores = {r["endpoint"]: r["scores"] for r in last_decision(gw)["ranked"]}
    assert scores["vllm-0"]["precise-prefix-cache-scorer"] == 1.0
    assert scores["vllm-1"]["precise-prefix-cache-scorer"] == 0.0

    # 2. vllm-0's cache reset: vLLM publishes AllBlocksCleared with its next engine step
    status, body, _ = post_json(f"{names['vllm-0'].url}/reset_prefix_cache", {})
    assert status == 200, body
    complete(names["vllm-0"].url, "An unrelated request that makes the engine step. " * 3)
    wait_for(lambda: index_says(None), EVENTS_TIMEOUT_S, "the index to drop vllm-0's blocks of the prompt")

    # 3. warmed on vllm-1 behind the gateway's back: the index says vllm-1, and it goes there
    complete(names["vllm-1"].url, prompt)
    wait_for(lambda: index_says("vllm-1"), EVENTS_TIMEOUT_S, "vllm-1's events to index the prompt")
    served, _ = complete(gw.url, prompt)
    assert served == f"127.0.0.1:{names['vllm-1'].port}"
    scores = {r["endpoint"]: r["scores"] for r in last_decision(gw)["ranked"]}
    assert scores["vllm-1"]["precise-prefix-cache-scorer"] == 1.0
    assert scores["vllm-0"]["precise-prefix-cache-scorer"] == 0.0

    # 4. a prompt the gateway sees first is tokenized in its worker thread (more than 256 new
    #    characters): the server it went to reports, by its own events, every block the gateway
    #    keyed from those ids (the index is asked with the same ids, now in the prefix store)
    fresh = "Tenant gamma asks about owls. " + SENTENCE * 24
    served, _ = complete(gw.url, fresh)
    holder = next(name for name, s in names.items() if served == f"127.0.0.1:{s.port}")
    wait_for(lambda: index_says(holder, fresh), EVENTS_TIMEOUT_S, f"{holder}'s events to confirm the prompt")


def test_chat_tokenized_as_vllm_tokenizes_it(vllm_one: VLLMServer, assets: Assets) -> None:
    """The gateway's rendering of the model's chat template and its tokenization give the token
    ids vLLM itself computes for the same messages (its /tokenize endpoint), and completions too."""
    from inferpool.scheduling.plugins.hf_tokenizer import HFPromptTokenizer

    hf = HFPromptTokenizer(str(assets.model / "tokenizer.json"))
    messages = [
        {"role": "system", "content": "You review food. " * 5},
        {"role": "user", "content": "Is the pasta good? " + SENTENCE * 3},
    ]
    for body in (
        {"messages": messages},
        {"messages": messages, "add_generation_prompt": False},
        {"prompt": SENTENCE * 4},
    ):
        status, answer, _ = post_json(f"{vllm_one.url}/tokenize", {"model": BASE_MODEL, **body})
        assert status == 200, answer
        assert hf.prompt_ids(body) == json.loads(answer)["tokens"], body
