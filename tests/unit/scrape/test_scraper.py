"""The scraper against a real HTTP server on loopback."""

from __future__ import annotations

import ssl
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest
from aiohttp import web
from scrape_helpers import FakeServer, serving, wait_for

from free_ports import free_port
from inferpool.extproc.certs import self_signed
from inferpool.extproc.upstream_flags import flag_metric_map
from inferpool.scrape import Readiness, ScrapeConfig, Scraper
from inferpool.state import Datastore, Endpoint, Pool

FAST = ScrapeConfig(interval_s=0.02, timeout_s=2.0, failure_threshold=3)


def make_store(port: int, names: tuple[str, ...] = ("pod-0",)) -> Datastore:
    store = Datastore()
    store.upsert_pool(Pool("default", "pool", {"app": "x"}, [port]))
    for name in names:
        store.upsert_endpoint(Endpoint(name, "127.0.0.1", port, "default/pool", {"app": "x"}))
    return store


async def test_scrapes_leaves_rotation_and_comes_back(fake_server: FakeServer) -> None:
    store = make_store(fake_server.port)
    (endpoint,) = store.endpoints("default/pool")
    async with Scraper(store, FAST) as scraper:
        await wait_for(lambda: endpoint.metrics.scraped_at > 0)
        assert (endpoint.metrics.waiting_queue_size, endpoint.metrics.running_requests) == (4, 4)
        assert endpoint.metrics.cache_block_size in (128, None)
        assert not scraper.is_stale(endpoint)

        fake_server.metrics_status = 500
        await wait_for(lambda: not endpoint.ready)
        assert endpoint.consecutive_scrape_failures >= FAST.failure_threshold
        kept = endpoint.metrics.scraped_at  # last good metrics stay, and age
        assert scraper.is_stale(endpoint, now=kept + FAST.stale_after_s + 0.1)

        fake_server.metrics_status = 200
        fake_server.page = fake_server.page.replace(
            'vllm:num_requests_waiting{engine="0",model_name="tiny-llama"} 4.0',
            'vllm:num_requests_waiting{engine="0",model_name="tiny-llama"} 9.0',
        ).replace('vllm:num_requests_waiting{engine="0"} 4.0', 'vllm:num_requests_waiting{engine="0"} 9.0')
        await wait_for(lambda: endpoint.ready)
        assert endpoint.consecutive_scrape_failures == 0
        assert endpoint.metrics.waiting_queue_size == 9
        assert endpoint.metrics.scraped_at > kept


async def test_keep_alive_reuses_one_connection(fake_server: FakeServer) -> None:
    store = make_store(fake_server.port)
    async with Scraper(store, FAST) as scraper:
        await wait_for(lambda: scraper.scrapes >= 20)
    assert len(fake_server.peers) == 1


async def test_slow_answer_times_out_and_counts_as_failure(fake_server: FakeServer) -> None:
    fake_server.delay_s = 1.0
    store = make_store(fake_server.port)
    (endpoint,) = store.endpoints("default/pool")
    config = ScrapeConfig(interval_s=0.02, timeout_s=0.1, failure_threshold=2)
    async with Scraper(store, config) as scraper:
        await wait_for(lambda: not endpoint.ready)
        assert scraper.scrapes == 0 and endpoint.metrics.scraped_at == 0.0
        fake_server.delay_s = 0.0
        await wait_for(lambda: endpoint.ready)


async def test_dead_port_leaves_rotation() -> None:
    store = make_store(free_port())
    (endpoint,) = store.endpoints("default/pool")
    async with Scraper(store, FAST):
        await wait_for(lambda: not endpoint.ready)
        assert endpoint.metrics.scraped_at == 0.0


async def test_follows_datastore_and_scrapes_shared_address_once(fake_server: FakeServer) -> None:
    store = make_store(fake_server.port, names=())
    async with Scraper(store, FAST) as scraper:
        first = store.upsert_endpoint(Endpoint("a", "127.0.0.1", fake_server.port, "default/pool"))
        store.upsert_pool(Pool("default", "other", {"app": "x"}, [fake_server.port]))
        second = store.upsert_endpoint(Endpoint("a", "127.0.0.1", fake_server.port, "default/other"))
        await wait_for(lambda: first.metrics.scraped_at > 0 and second.metrics.scraped_at > 0)
        # one address, one target: each scrape serves both pools' endpoint objects
        assert first.metrics.scraped_at == second.metrics.scraped_at
        # one object may serve both: frozen, so neither endpoint's writer can change the other's
        with pytest.raises(FrozenInstanceError):
            first.metrics.waiting_queue_size = 0  # type: ignore[misc]
        before = scraper.scrapes
        await wait_for(lambda: scraper.scrapes >= before + 5)
        assert fake_server.count("/metrics") <= scraper.scrapes + scraper.failures + 1

        store.remove_endpoint("default/pool", "a")
        store.remove_endpoint("default/other", "a")
        await wait_for(lambda: not scraper._targets)
        stopped_at = fake_server.count("/metrics")
        probe = store.upsert_endpoint(Endpoint("b", "127.0.0.1", fake_server.port, "default/pool"))
        await wait_for(lambda: probe.metrics.scraped_at > 0)
        assert fake_server.count("/metrics") > stopped_at


async def test_engine_label_selects_metric_map(fake_server: FakeServer) -> None:
    fake_server.page = "sglang:num_queue_reqs 7\nsglang:num_running_reqs 2\nsglang:token_usage 0.5\n"
    store = make_store(fake_server.port, names=())
    labels = {"app": "x", "inference.networking.k8s.io/engine-type": "sglang"}
    endpoint = store.upsert_endpoint(Endpoint("s", "127.0.0.1", fake_server.port, "default/pool", labels))
    async with Scraper(store, FAST):
        await wait_for(lambda: endpoint.metrics.scraped_at > 0)
    assert (endpoint.metrics.waiting_queue_size, endpoint.metrics.running_requests) == (7, 2)
    assert endpoint.metrics.kv_cache_usage == 0.5


async def test_a_default_map_replaces_the_default_engines_series_only(fake_server: FakeServer) -> None:
    # upstream's metric flags as its chart passes them for Triton, whose pods name no engine
    fake_server.page = (
        'nv_trt_llm_request_metrics{request_type="waiting"} 5\n'
        'nv_trt_llm_request_metrics{request_type="scheduled"} 3\n'
        'nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"} 0.25\n'
    )
    flags = flag_metric_map(
        "nv_trt_llm_request_metrics{request_type=waiting}",
        "nv_trt_llm_request_metrics{request_type=scheduled}",
        "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=fraction}",
        "",
    )
    store = make_store(fake_server.port)
    (plain,) = store.endpoints("default/pool")

    async def sglang(_request: web.Request) -> web.Response:
        return web.Response(
            text="sglang:num_queue_reqs 7\nsglang:num_running_reqs 2\nsglang:token_usage 0.5\n"
        )

    async with serving(sglang) as port:
        labels = {"app": "x", "inference.networking.k8s.io/engine-type": "sglang"}
        other = store.upsert_endpoint(Endpoint("s", "127.0.0.1", port, "default/pool", labels))
        async with Scraper(store, replace(FAST, default_map=flags)):
            await wait_for(lambda: plain.metrics.scraped_at > 0 and other.metrics.scraped_at > 0)
    assert (plain.metrics.waiting_queue_size, plain.metrics.running_requests) == (5, 3)
    assert plain.metrics.kv_cache_usage == 0.25
    assert (other.metrics.waiting_queue_size, other.metrics.kv_cache_usage) == (7, 0.5)  # its own engine


async def test_metrics_are_read_on_the_metrics_port_when_one_is_set(fake_server: FakeServer) -> None:
    serving_port = free_port()  # nothing listens: only the metrics port answers
    store = make_store(serving_port)
    (endpoint,) = store.endpoints("default/pool")
    async with Scraper(store, replace(FAST, metrics_port=fake_server.port)) as scraper:
        await wait_for(lambda: endpoint.metrics.scraped_at > 0)
        assert endpoint.metrics.waiting_queue_size == 4 and not scraper.is_stale(endpoint)


async def test_https_servers_are_scraped_over_tls(tmp_path: Path) -> None:
    # a model server serving TLS with a self-signed certificate (vLLM --ssl-keyfile/--ssl-certfile)
    key, cert = self_signed(["127.0.0.1"])
    (tmp_path / "tls.key").write_bytes(key)
    (tmp_path / "tls.crt").write_bytes(cert)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(text="vllm:num_requests_waiting 6\nvllm:num_requests_running 1\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        port = int(runner.addresses[0][1])
        store = make_store(port)
        (endpoint,) = store.endpoints("default/pool")
        # verifying a self-signed certificate fails: the endpoint never gets metrics
        async with Scraper(store, replace(FAST, scheme="https", failure_threshold=1)) as scraper:
            await wait_for(lambda: scraper.failures >= 2)
        assert endpoint.metrics.scraped_at == 0
        async with Scraper(store, replace(FAST, scheme="https", verify_tls=False)):
            await wait_for(lambda: endpoint.metrics.scraped_at > 0)
        assert (endpoint.metrics.waiting_queue_size, endpoint.metrics.running_requests) == (6, 1)
    finally:
        await runner.cleanup()


async def test_stop_cancels_cleanly(fake_server: FakeServer) -> None:
    store = make_store(fake_server.port, names=("a", "b"))
    scraper = Scraper(store, FAST)
    await scraper.start()
    await wait_for(lambda: scraper.scrapes > 0)
    tasks = [t.task for t in scraper._targets.values()]
    await scraper.stop()
    assert all(t is not None and t.done() for t in tasks)
    count = fake_server.count("/metrics")
    store.upsert_endpoint(Endpoint("c", "127.0.0.1", fake_server.port, "default/pool"))
    assert not scraper._targets
    assert fake_server.count("/metrics") == count
    await scraper.stop()  # idempotent


def test_readiness_is_the_and_of_both_signals() -> None:
    store = Datastore()
    readiness = Readiness(store)
    endpoint = store.upsert_endpoint(Endpoint("e", "127.0.0.1", 1, "default/pool"))
    readiness.set_health(endpoint, False)
    readiness.set_scrape(endpoint, True)
    assert not endpoint.ready  # a good scrape does not override a failing health check
    readiness.set_health(endpoint, True)
    assert endpoint.ready
    readiness.set_scrape(endpoint, False)
    readiness.set_health(endpoint, True)
    assert not endpoint.ready
    readiness.set_scrape(endpoint, True)
    assert endpoint.ready
