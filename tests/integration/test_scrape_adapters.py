"""The scraper learns which LoRA adapters a server has loaded, and its base model, from its model list.

vLLM's metrics name only adapters with unfinished requests; an idle loaded adapter shows
up only in GET /v1/models, so routing needs this to avoid sending requests where the
adapter is absent (vLLM answers those 404).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from inferpool.scrape import ScrapeConfig, Scraper
from inferpool.sim import SimConfig, SimReplica
from inferpool.state import Datastore, Endpoint, Pool


async def _until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(20):
        while not predicate():  # noqa: ASYNC110 - scraped state has no event to wait on
            await asyncio.sleep(0.02)


async def test_loaded_adapters_follow_load_and_unload() -> None:
    with_lora = SimReplica(SimConfig(port=0, lora_modules=["food-review"], speed=50))
    without = SimReplica(SimConfig(port=0, speed=50))
    await with_lora.start()
    await without.start()
    try:
        store = Datastore()
        store.upsert_pool(Pool("default", "p", {"app": "x"}, [8000]))
        a = store.upsert_endpoint(Endpoint("a", "127.0.0.1", with_lora.port, "default/p", {"app": "x"}))
        b = store.upsert_endpoint(Endpoint("b", "127.0.0.1", without.port, "default/p", {"app": "x"}))
        config = ScrapeConfig(interval_s=0.02, models_interval_s=0.1)
        async with Scraper(store, config):
            await _until(
                lambda: a.metrics.loaded_adapters is not None and b.metrics.loaded_adapters is not None
            )
            assert a.metrics.loaded_adapters == frozenset({"food-review"})
            assert b.metrics.loaded_adapters == frozenset()
            # and each server's own model name: the list's entry without a parent
            base = with_lora.config.model_name
            assert a.metrics.base_models == b.metrics.base_models == frozenset({base})
            # and the entries themselves, for the gateway's own /v1/models
            assert a.metrics.model_cards is not None and set(a.metrics.model_cards) == {base, "food-review"}
            adapter = a.metrics.model_cards["food-review"]
            assert (adapter["parent"], adapter["owned_by"]) == (base, "vllm") and "permission" in adapter

            async with aiohttp.ClientSession() as http:
                load = {"lora_name": "cad-fabricator", "lora_path": "/adapters/cad-fabricator"}
                async with http.post(f"{without.url}/v1/load_lora_adapter", json=load) as r:
                    assert r.status == 200
                async with http.post(
                    f"{with_lora.url}/v1/unload_lora_adapter", json={"lora_name": "food-review"}
                ) as r:
                    assert r.status == 200
            await _until(lambda: b.metrics.loaded_adapters == frozenset({"cad-fabricator"}))
            await _until(lambda: a.metrics.loaded_adapters == frozenset())
    finally:
        await with_lora.stop()
        await without.stop()
