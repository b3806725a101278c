"""How long the event loop stalls while something runs on it: a ticker task sleeps 1 ms at a
time and records the gaps between its wake-ups (the tests' root is on sys.path, so every tier
imports it as `loop_stalls`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def stalls(run: Callable[[], Awaitable[object]]) -> tuple[float, float, float]:
    """(the loop's longest gap between 1 ms ticks, its gaps beyond 2 ms added up, the whole
    run), in ms, while `run()` is awaited. A gap of ≈4 ms also comes from a busy machine
    (another runnable process holding the core for a scheduler tick): the sum is the steadier
    reading."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    start = time.perf_counter()
    await run()
    elapsed = time.perf_counter() - start
    done.set()
    await task
    return max(gaps) * 1e3, sum(g - 0.002 for g in gaps if g > 0.002) * 1e3, elapsed * 1e3
