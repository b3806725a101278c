"""A tiny model-server stand-in for scraper and prober tests: serves a page, or fails on demand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from scrape_helpers import FakeServer, serving, vllm_page


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeServer]:
    server = FakeServer(page=vllm_page("72"))

    async def handle(request: web.Request) -> web.Response:
        server.hits[request.path] = server.hits.get(request.path, 0) + 1
        if request.transport is not None:
            server.peers.add(request.transport.get_extra_info("peername"))
        if request.path == "/metrics":
            if server.delay_s:
                await asyncio.sleep(server.delay_s)
            return web.Response(text=server.page, status=server.metrics_status)
        if request.path in ("/health", "/custom-health"):
            return web.Response(status=server.health_status)
        return web.Response(status=404)

    async with serving(handle) as port:
        server.port = port
        yield server
