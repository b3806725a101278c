"""The scraper asks for only the series it reads (`/metrics/?name[]=...`, which vLLM serves from
prometheus_client's app) and falls back to the whole page for good where that is not served."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from scrape_helpers import serving, vllm_page, wait_for
from test_scraper import FAST, make_store

from inferpool.scrape import Scraper
from inferpool.scrape.engines import VLLM
from inferpool.scrape.parser import parse_metrics

PAGE = vllm_page("72")


def restricted(page: str, names: set[str]) -> str:
    """What prometheus_client's restricted registry answers: only the named families."""
    keep = []
    for line in page.splitlines():
        if line.startswith("# "):
            parts = line.split(" ", 3)
            name = parts[2] if len(parts) > 2 else ""
        else:
            name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in names:
            keep.append(line)
    return "\n".join(keep) + "\n"


class Server:
    def __init__(self, filtered: Callable[[set[str]], web.Response]) -> None:
        self.filtered = filtered
        self.hits: dict[str, int] = {}
        self.asked: set[str] = set()
        self.port = 0


async def serve(filtered: Callable[[set[str]], web.Response]) -> AsyncIterator[Server]:
    server = Server(filtered)

    async def handle(request: web.Request) -> web.Response:
        server.hits[request.path] = server.hits.get(request.path, 0) + 1
        if request.path == "/metrics":
            return web.Response(text=PAGE)  # like vLLM's instrumentator route: name[] ignored
        if request.path == "/metrics/":
            names = set(request.query.getall("name[]", []))
            server.asked = names
            return server.filtered(names)
        return web.Response(status=404)

    async with serving(handle) as port:
        server.port = port
        yield server


@pytest.fixture
async def vllm_like() -> AsyncIterator[Server]:
    async for server in serve(lambda names: web.Response(text=restricted(PAGE, names))):
        yield server


@pytest.fixture
async def empty_filtered() -> AsyncIterator[Server]:
    # 200 with nothing in it: a multiprocess registry that cannot restrict answers like this
    async for server in serve(lambda names: web.Response(text="")):
        yield server


@pytest.fixture
async def no_filtered() -> AsyncIterator[Server]:
    async for server in serve(lambda names: web.Response(status=404)):
        yield server


async def test_reads_only_the_series_it_needs_where_the_server_filters(vllm_like: Server) -> None:
    store = make_store(vllm_like.port)
    (endpoint,) = store.endpoints("default/pool")
    async with Scraper(store, FAST) as scraper:
        await wait_for(lambda: scraper.scrapes >= 3)
    assert vllm_like.asked == set(VLLM.names)
    assert vllm_like.hits.get("/metrics/", 0) >= 3 and "/metrics" not in vllm_like.hits
    whole = parse_metrics(PAGE)
    got = endpoint.metrics
    assert (got.waiting_queue_size, got.running_requests) == (
        whole.waiting_queue_size,
        whole.running_requests,
    )
    assert got.kv_cache_usage == whole.kv_cache_usage
    assert (got.cache_block_size, got.cache_num_blocks) == (whole.cache_block_size, whole.cache_num_blocks)
    assert len(restricted(PAGE, set(VLLM.names))) < len(PAGE) / 3


async def falls_back_once_for_good(server: Server) -> None:
    store = make_store(server.port)
    (endpoint,) = store.endpoints("default/pool")
    async with Scraper(store, FAST) as scraper:
        await wait_for(lambda: scraper.scrapes >= 3)
    assert server.hits["/metrics/"] == 1  # tried once, then never again
    assert server.hits["/metrics"] >= 3
    assert scraper.failures == 0  # the fallback is no failed scrape
    whole = parse_metrics(PAGE)
    assert endpoint.metrics.waiting_queue_size == whole.waiting_queue_size
    assert endpoint.metrics.running_requests == whole.running_requests


async def test_falls_back_to_the_whole_page_where_there_is_no_filtered_one(no_filtered: Server) -> None:
    await falls_back_once_for_good(no_filtered)


async def test_falls_back_where_the_filtered_page_holds_no_load_series(empty_filtered: Server) -> None:
    await falls_back_once_for_good(empty_filtered)
