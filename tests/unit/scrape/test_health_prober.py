"""HealthCheckPolicy probing, and its AND with scrape health."""

from __future__ import annotations

from scrape_helpers import FakeServer, wait_for

from inferpool.scrape import ScrapeConfig, Scraper
from inferpool.scrape.health import HealthProber
from inferpool.state import Datastore, Endpoint, HealthCheck, Pool

CHECK = HealthCheck(
    path="/custom-health", interval_s=0.02, timeout_s=2.0, unhealthy_threshold=2, healthy_threshold=2
)


def store_with(port: int, check: HealthCheck | None, endpoint_port: int | None = None) -> Datastore:
    store = Datastore()
    store.upsert_pool(Pool("default", "pool", {"app": "x"}, [port], health_check=check))
    store.upsert_endpoint(Endpoint("pod-0", "127.0.0.1", endpoint_port or port, "default/pool"))
    return store


async def test_probe_failures_take_endpoint_out_and_scrapes_cannot_bring_it_back(
    fake_server: FakeServer,
) -> None:
    store = store_with(fake_server.port, CHECK)
    (endpoint,) = store.endpoints("default/pool")
    scraper = Scraper(store, ScrapeConfig(interval_s=0.02, timeout_s=2.0))
    async with scraper, HealthProber(store, readiness=scraper.readiness) as prober:
        await wait_for(lambda: fake_server.count("/custom-health") >= 2 and endpoint.metrics.scraped_at > 0)
        assert endpoint.ready and prober.healthy(endpoint)

        fake_server.health_status = 503
        await wait_for(lambda: not endpoint.ready)
        assert not prober.healthy(endpoint)
        scrapes = scraper.scrapes
        await wait_for(lambda: scraper.scrapes >= scrapes + 3)  # scrapes keep succeeding...
        assert not endpoint.ready  # ...and the failing probe still holds the endpoint out

        fake_server.health_status = 200
        at = fake_server.count("/custom-health")
        await wait_for(lambda: endpoint.ready)
        assert fake_server.count("/custom-health") >= at + CHECK.healthy_threshold


async def test_probe_port_overrides_serving_port(fake_server: FakeServer) -> None:
    check = HealthCheck(path="health", port=fake_server.port, interval_s=0.02, timeout_s=2.0)
    store = store_with(fake_server.port, check, endpoint_port=1)  # serving port 1: nothing there
    (endpoint,) = store.endpoints("default/pool")
    async with HealthProber(store):
        await wait_for(lambda: fake_server.count("/health") >= 3)
    assert endpoint.ready


async def test_unreachable_endpoint_goes_unhealthy() -> None:
    store = store_with(1, CHECK)
    (endpoint,) = store.endpoints("default/pool")
    async with HealthProber(store):
        await wait_for(lambda: not endpoint.ready)


async def test_pools_without_check_are_not_probed_and_removed_check_releases(
    fake_server: FakeServer,
) -> None:
    store = store_with(fake_server.port, None)
    (endpoint,) = store.endpoints("default/pool")
    fake_server.health_status = 500
    async with HealthProber(store) as prober:
        assert not prober._probes  # nothing to probe: the pool has no health check
        assert fake_server.count("/custom-health") == 0 and endpoint.ready

        pool = store.pool("default/pool")
        assert pool is not None
        pool.health_check = CHECK
        store.upsert_pool(pool)
        await wait_for(lambda: not endpoint.ready)

        pool.health_check = None
        store.upsert_pool(pool)
        await wait_for(lambda: endpoint.ready)
        assert prober.healthy(endpoint)
        assert not prober._probes
