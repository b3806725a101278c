"""The simulator's metrics pages answer as vLLM 0.32's do: `/metrics` whole whatever the query,
`/metrics/?name[]=...` (prometheus_client's app) only the named series; and the gateway's
scraper, which asks for the filtered page first, reads the sim's filtered page."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from inferpool.scrape import ScrapeConfig, Scraper
from inferpool.scrape.parser import parse_metrics
from inferpool.sim import SimConfig, SimReplica
from inferpool.state import Datastore, Endpoint, Pool

WAITING, RUNNING = "vllm:num_requests_waiting", "vllm:num_requests_running"


async def test_the_filtered_page_holds_only_the_named_series() -> None:
    replica = SimReplica(SimConfig(model="tiny", port=0, speed=100))
    await replica.start()
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(replica.url + "/metrics") as resp:
                whole = await resp.text()
            query = [("name[]", WAITING), ("name[]", RUNNING)]
            async with s.get(replica.url + "/metrics", params=query) as resp:
                ignored = await resp.text()  # the plain route renders everything
            async with s.get(replica.url + "/metrics/", params=query) as resp:
                assert resp.status == 200
                filtered = await resp.text()
            async with s.get(replica.url + "/metrics/") as resp:
                unnamed = await resp.text()  # no name[]: the whole page there too
    finally:
        await replica.stop()
    families = {line.split()[2] for line in filtered.splitlines() if line.startswith("# TYPE")}
    assert families == {WAITING, RUNNING}
    assert len(filtered) < len(whole) // 10
    assert ignored.count("# TYPE") == whole.count("# TYPE") == unnamed.count("# TYPE") > 20
    parsed = parse_metrics(filtered)
    assert parsed.waiting_queue_size == 0 and parsed.running_requests == 0


async def test_the_gateways_scraper_reads_the_sims_filtered_page() -> None:
    replica = SimReplica(SimConfig(model="tiny", port=0, speed=100))
    await replica.start()
    try:
        store = Datastore()
        store.upsert_pool(Pool("default", "pool", {"app": "x"}, [replica.port]))
        store.upsert_endpoint(Endpoint("pod-0", "127.0.0.1", replica.port, "default/pool", {"app": "x"}))
        async with Scraper(store, ScrapeConfig(interval_s=0.02, timeout_s=5.0)) as scraper:
            deadline = time.monotonic() + 30  # generous: a busy 2-core CI machine
            while scraper.scrapes < 3:
                assert time.monotonic() < deadline, "the scraper did not scrape the sim in time"
                await asyncio.sleep(0.02)
            (target,) = scraper._targets.values()
            assert target.filtered is True  # the sim serves it, so no fallback to the whole page
        (endpoint,) = store.endpoints("default/pool")
        assert endpoint.metrics.cache_num_blocks is not None  # read from the filtered page
    finally:
        await replica.stop()
