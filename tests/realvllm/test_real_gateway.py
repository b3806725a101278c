"""Two real vLLM servers behind `inferpool serve`: routing, LoRA placement, scraped metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import openai
import pytest
import yaml

from inferpool.scrape import find_series
from realvllm.conftest import Assets
from realvllm.helpers import ensure_adapter, get, post_json, served_adapters, wait_for
from realvllm.servers import BASE_MODEL, Process, VLLMServer, free_port, inferpool_argv

POOL = "tiny-pool"


@dataclass
class Gateway:
    process: Process
    url: str
    admin: str


def manifests(listener_port: int) -> list[dict[str, object]]:
    return [
        {
            "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
            "kind": "InferencePool",
            "metadata": {"name": POOL, "namespace": "default"},
            "spec": {
                "selector": {"app": "tiny"},
                "targetPortNumber": 8000,
                "extensionRef": {"name": "unused"},
            },
        },
        {
            "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
            "kind": "InferenceModel",
            "metadata": {"name": "base", "namespace": "default"},
            "spec": {"modelName": BASE_MODEL, "criticality": "Critical", "poolRef": {"name": POOL}},
        },
        {
            "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
            "kind": "InferenceModel",
            "metadata": {"name": "lora-a", "namespace": "default"},
            "spec": {
                "modelName": "lora-a",
                "criticality": "Standard",
                "poolRef": {"name": POOL},
                "targetModels": [{"name": "lora-a", "weight": 100}],
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "default"},
            "spec": {
                "gatewayClassName": "inferpool",
                "listeners": [{"name": "http", "protocol": "HTTP", "port": listener_port}],
            },
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "route", "namespace": "default"},
            "spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [
                            {"group": "inference.networking.x-k8s.io", "kind": "InferencePool", "name": POOL}
                        ],
                    }
                ],
            },
        },
    ]


@pytest.fixture(scope="module")
def gateway(vllm_pair: list[VLLMServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("gateway")
    listener, admin = free_port(), free_port()
    mdir = work / "manifests"
    mdir.mkdir()
    (mdir / "all.yaml").write_text(yaml.safe_dump_all(manifests(listener)))
    endpoints = {
        "endpoints": [
            {"address": "127.0.0.1", "port": s.port, "name": f"vllm-{i}", "labels": {"app": "tiny"}}
            for i, s in enumerate(vllm_pair)
        ]
    }
    (work / "endpoints.yaml").write_text(yaml.safe_dump(endpoints))
    argv = inferpool_argv(
        "serve",
        "--no-auth",
        "-f",
        str(mdir),
        "--endpoints",
        str(work / "endpoints.yaml"),
        "--admin-port",
        str(admin),
    )
    proc = Process("inferpool-serve", argv, work / "serve.log")
    gw = Gateway(proc, f"http://127.0.0.1:{listener}", f"http://127.0.0.1:{admin}")
    proc.start()
    try:
        proc.wait_http(f"{gw.admin}/readyz", 120)

        def both_ready() -> bool:
            pools = json.loads(get(f"{gw.admin}/api/state"))["pools"]
            return sum(p["ready_endpoints"] for p in pools) == 2

        wait_for(both_ready, 60, "both vLLM endpoints ready in the gateway")
        yield gw
    finally:
        proc.stop()


def decisions(gw: Gateway) -> list[dict[str, object]]:
    return list(json.loads(get(f"{gw.admin}/api/decisions"))["decisions"])


def test_requests_through_the_gateway(gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", timeout=120, max_retries=0)
    for _ in range(4):
        done = client.completions.create(
            model=BASE_MODEL,
            prompt="Hello world",
            max_tokens=4,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
        assert done.usage is not None and done.usage.completion_tokens == 4
    stream = client.chat.completions.create(
        model=BASE_MODEL,
        messages=[{"role": "user", "content": "What is the best pizza in the world?"}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    ids = {m.id for m in client.models.list().data}
    assert {BASE_MODEL, "lora-a"} <= ids
    recent = [d for d in decisions(gateway) if d.get("model") == BASE_MODEL]
    assert len(recent) >= 5 and all(d["status"] == 200 for d in recent), [
        (d["status"], d.get("error"), d.get("picked"), d.get("attempts")) for d in recent
    ]
    assert all(d["picked"] for d in recent)


def test_adapter_on_one_server_is_routed_there(
    gateway: Gateway, vllm_pair: list[VLLMServer], assets: Assets
) -> None:
    with_adapter, without = vllm_pair
    ensure_adapter(with_adapter.url, "lora-a", assets.adapters["lora-a"])
    if "lora-a" in served_adapters(without.url):
        assert post_json(f"{without.url}/v1/unload_lora_adapter", {"lora_name": "lora-a"})[0] == 200
    expected = {"vllm-0", f"127.0.0.1:{with_adapter.port}"}  # the endpoint's name or its address

    def gateway_knows() -> bool:  # the scraper reads each server's /v1/models about once a second
        pools = json.loads(get(f"{gateway.admin}/api/state"))["pools"]
        loaded = {
            e["port"]: set(e["metrics"].get("loaded_adapters") or ()) for p in pools for e in p["endpoints"]
        }
        return "lora-a" in loaded.get(with_adapter.port, set()) and "lora-a" not in loaded.get(
            without.port, set()
        )

    deadline = time.monotonic() + 30
    while not gateway_knows():
        assert time.monotonic() < deadline, "the gateway never saw which server has lora-a"
        time.sleep(0.1)
    for i in range(6):
        status, body, _ = post_json(
            f"{gateway.url}/v1/completions", {"model": "lora-a", "prompt": f"{i} Hello", "max_tokens": 3}
        )
        assert status == 200, body
        assert json.loads(body)["model"] == "lora-a"
    lora = [d for d in decisions(gateway) if d.get("model") == "lora-a"]
    assert len(lora) >= 6
    assert all(d["picked"] in expected for d in lora[-6:]), lora[-6:]


def test_gateway_metrics_show_scraped_pool_figures(gateway: Gateway) -> None:
    text = get(f"{gateway.admin}/metrics").decode()
    found = find_series(
        text,
        [
            "inference_pool_ready_pods",
            "inference_pool_average_kv_cache_utilization",
            "inference_pool_average_queue_size",
            "inference_model_request_total",
        ],
    )
    assert [s.value for s in found["inference_pool_ready_pods"]] == [2.0]
    assert 0.0 <= found["inference_pool_average_kv_cache_utilization"][0].value <= 1.0
    assert found["inference_pool_average_queue_size"][0].value >= 0.0
    totals = {s.labels.get("model_name"): s.value for s in found["inference_model_request_total"]}
    assert totals.get(BASE_MODEL, 0) >= 5
