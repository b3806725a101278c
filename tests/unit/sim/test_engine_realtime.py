"""The real-time loop keeps the simulated GPU timeline when its event loop stalls briefly."""

from __future__ import annotations

import asyncio
import itertools
import time

from inferpool.sim.clock import RealClock
from inferpool.sim.engine import MAX_CATCH_UP_S, Engine, SimRequest, TokenEvent
from inferpool.sim.profile import load_profile

PROMPT = "the quick brown fox jumps over the lazy dog " * 20
TOKENS = 60


def _request(engine: Engine) -> SimRequest:
    req = SimRequest("r", engine.tokenizer.encode(PROMPT), TOKENS, ignore_eos=True)
    engine.add_request(req)
    return req


class _LoopGaps:
    """How long the event loop went without running a tick (a 1 ms sleep), gap by gap."""

    def __init__(self) -> None:
        self.gaps: list[float] = []

    async def watch(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.001)
            now = time.monotonic()
            self.gaps.append(now - last)
            last = now

    def beyond(self, slack_s: float) -> float:
        """What the gaps add up to past `slack_s` each: an engine step woken that late loses it."""
        return sum(max(0.0, gap - slack_s) for gap in self.gaps)


def _virtual_finish() -> float:
    engine = Engine(load_profile("llama-3.1-8b-h100"), seed=0)
    req = _request(engine)
    engine.run_until_idle()
    assert req.finish_time is not None
    return req.finish_time - req.arrival_time


async def test_short_stalls_do_not_push_the_timeline_back() -> None:
    """Ten 30 ms stalls (like /metrics renders of other replicas in the same process).

    Without catch-up every stall that outlasts a step's sleep is lost for good (≈300 ms in
    total here); with it the request ends where the virtual-time engine says, give or take
    one stall. A busy machine adds stalls of its own (the process descheduled): what of them
    outlasts the catch-up is lost as a real server's would be, so it is measured on the loop
    (`_LoopGaps`) and added to the bound rather than left to luck.
    """
    stall_s, stalls = 0.03, 10
    assert stall_s < MAX_CATCH_UP_S
    expected = _virtual_finish()
    assert expected > stalls * stall_s  # the request outlives the stalls

    engine = Engine(load_profile("llama-3.1-8b-h100"), clock=RealClock(1.0), seed=0)
    finished = asyncio.Event()
    engine.finish_hooks.append(lambda _req: finished.set())
    runner = asyncio.create_task(engine.run())
    gaps = _LoopGaps()
    watcher = asyncio.create_task(gaps.watch())
    try:
        req = _request(engine)
        for _ in range(stalls):
            await asyncio.sleep(0.005)
            time.sleep(stall_s)  # noqa: ASYNC251 -- block the event loop on purpose
        await asyncio.wait_for(finished.wait(), 60)
    finally:
        runner.cancel()
        watcher.cancel()
    assert req.finish_time is not None, "the request never finished"
    drift = (req.finish_time - req.arrival_time) - expected
    # The planned stalls (30 ms) are within the catch-up, so on a quiet machine the excess is 0
    # and the bound is half the stalls' total, which a loop without catch-up (≈300 ms) exceeds.
    machine_s = gaps.beyond(MAX_CATCH_UP_S)
    assert drift < stalls * stall_s / 2 + machine_s, (
        f"timeline pushed back by {drift * 1000:.0f} ms ({machine_s * 1000:.0f} ms of the machine's own "
        "stalls beyond the catch-up)"
    )
    assert len(req.output_token_ids) == TOKENS


async def test_api_server_delays_hold_in_real_time() -> None:
    """A burst waits in the simulated API server, then every request finishes; no token is handed
    to the HTTP layer before its (API-server) time on the simulated clock."""
    engine = Engine(load_profile("llama-3.1-8b-h100"), clock=RealClock(50.0), seed=0)
    assert engine.profile.cpu.frontend_per_request_ms > 0
    early: list[float] = []
    finished: list[SimRequest] = []
    done = asyncio.Event()
    burst = 30

    def on_token(event: TokenEvent) -> None:
        if engine.clock.now() < event.time - 1e-6:
            early.append(event.time - engine.clock.now())

    def on_finish(req: SimRequest) -> None:
        finished.append(req)
        if len(finished) == burst:
            done.set()

    runner = asyncio.create_task(engine.run())
    engine.finish_hooks.append(on_finish)
    try:
        reqs = []
        for i in range(burst):
            req = SimRequest(f"r{i}", engine.tokenizer.encode(f"{i} " + PROMPT), 5, ignore_eos=True,
                             on_token=on_token)  # fmt: skip
            engine.add_request(req)
            reqs.append(req)
        await asyncio.wait_for(done.wait(), 30)
    finally:
        runner.cancel()
    assert not early
    gaps = [b.ready_time - a.ready_time for a, b in itertools.pairwise(reqs)]
    assert min(gaps) >= engine.profile.cpu.frontend_per_request_ms / 1000 - 1e-9
