"""The engine model: vLLM V1's scheduler step loop with explicit budgets, on a simulated GPU.

Each step (sim-calibration.md §3):
1. budget = max_num_batched_tokens; RUNNING requests first, in admission order, each asking for
   num_tokens - num_computed tokens (a decode asks for 1, a prefill for its next chunk);
2. a running request that cannot get KV blocks preempts the newest running request (recompute);
3. only if nothing was preempted, WAITING requests are admitted in order, taking their cached
   prefix first, until max_num_seqs, the budget, or a failed allocation; a request whose adapter
   would exceed max_loras distinct adapters in the batch is skipped (LoRA-deferred);
4. the step lasts profile.step.step_seconds(...) plus the engine core's CPU work
   (profile.cpu); a request whose prompt is fully computed samples one token at the end of the step.

The API server in front of the engine is one FIFO CPU queue (profile.cpu): a request waits
there before the scheduler sees it, and each step's tokens wait there before a client sees
them; request and token times (first_token_time, finish_time, TokenEvent.time) are the times
the client sees.

With a KV connector (vLLM's NixlConnector, sim/nixl.py), a request whose prompt a remote
prefill server computed is admitted without compute: its blocks are allocated, the connector
pulls the KV into them (WAITING_FOR_REMOTE_KVS, between steps), and the request then computes
only the last prompt token; a request asking for remote decode keeps its blocks after it
finishes (`held`), until the decoder pulls them or their lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import xxhash

from inferpool.sim.clock import RealClock, VirtualClock
from inferpool.sim.kvcache import Block, BlockPool, chain_hashes
from inferpool.sim.profile import HardwareProfile
from inferpool.tokenization import EOS_ID, Tokenizer

WAITING = "waiting"
WAITING_FOR_REMOTE_KVS = "waiting_for_remote_kvs"  # blocks allocated, KV being pulled from a prefill server
RUNNING = "running"
FINISHED = "finished"

# Simulated seconds a step may start behind the wall clock to make up for a stalled event loop.
MAX_CATCH_UP_S = 0.05


@dataclass(slots=True)
class TokenEvent:
    """One generated token as the HTTP layer streams it; the last one carries finish_reason."""

    token_id: int
    text: str
    time: float
    finish_reason: str | None = None
    stop_reason: str | None = None


@dataclass(eq=False)
class SimRequest:
    """One sequence in the engine; `on_token` is called at the end of each step that samples for it."""

    request_id: str
    prompt_token_ids: list[int]
    max_tokens: int
    lora: str | None = None
    ignore_eos: bool = False
    stop: tuple[str, ...] = ()
    seed: int | None = None
    on_token: Callable[[TokenEvent], None] | None = None

    status: str = WAITING
    arrival_time: float = 0.0
    ready_time: float = 0.0  # when the API server has handed it to the engine core
    first_scheduled_time: float | None = None
    first_token_time: float | None = None
    last_token_time: float | None = None
    finish_time: float | None = None
    output_token_ids: list[int] = field(default_factory=list)
    output_text: str = ""
    num_computed_tokens: int = 0
    num_cached_tokens: int = -1
    num_preemptions: int = 0
    finish_reason: str | None = None
    stop_reason: str | None = None
    target_len: int = 0
    ends_with_eos: bool = False
    blocks: list[Block] = field(default_factory=list)
    block_hashes: list[int] = field(default_factory=list)
    num_committed_blocks: int = 0
    deferred: bool = False
    num_admissions: int = 0
    kv_transfer_params: dict[str, Any] | None = None  # as the client sent them (vLLM's extra_args)
    kv_result: dict[str, Any] | None = None  # the answer's kv_transfer_params (a prefill for remote decode)
    num_external_tokens: int = 0  # prompt tokens whose KV was pulled from a remote prefill
    kv_loaded: bool = False  # remote KV arrived: the blocks are held, only the last prompt token is left
    _rng: random.Random | None = None
    _pending_pieces: list[int] = field(default_factory=list)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    def token_at(self, position: int) -> int:
        n = len(self.prompt_token_ids)
        return self.prompt_token_ids[position] if position < n else self.output_token_ids[position - n]

    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids


@dataclass(slots=True)
class StepReport:
    """What one step did, for metrics hooks."""

    start: float
    duration: float
    num_tokens: int
    num_preempted: int
    itls: list[float]
    new_tokens: int
    loaded_loras: list[str]


@dataclass(eq=False)
class HeldBlocks:
    """A finished prefill's blocks, kept for a remote decoder until it pulls them or `expires` passes."""

    request_id: str
    blocks: list[Block]
    num_tokens: int
    expires: float


class KVConnector(Protocol):
    """The engine side of a KV connector (sim/nixl.py), the hooks vLLM's scheduler calls."""

    def on_new_request(self, req: SimRequest) -> None:
        """A request reached the scheduler."""

    def num_external_tokens(self, req: SimRequest, num_local_computed: int) -> int:
        """Prompt tokens to pull from a remote prefill beyond the local prefix-cache hit (no side effects)."""

    def update_state_after_alloc(self, req: SimRequest, num_external: int) -> None:
        """The request was admitted with blocks for `num_external` remote tokens: pull them (then
        Engine.finish_load), or, with nothing to pull, let the prefill server free its blocks."""

    def request_finished(self, req: SimRequest) -> float | None:
        """Sets req.kv_result; seconds to keep the blocks for a remote decoder, or None to free them."""

    def on_expired(self, held: HeldBlocks) -> None:
        """Held blocks were freed unread when their lease ran out."""


@dataclass
class _Batch:
    scheduled: list[tuple[SimRequest, int]]
    preempted: list[SimRequest]
    examined_waiting: int = 0  # waiting requests the scheduler looked at (admitted or skipped)


class Engine:
    """One simulated vLLM engine core (one GPU)."""

    def __init__(
        self,
        profile: HardwareProfile,
        *,
        max_loras: int = 1,
        max_cpu_loras: int | None = None,
        clock: RealClock | VirtualClock | None = None,
        seed: int = 0,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        self.profile = profile
        self.max_loras = max_loras
        self.max_cpu_loras = max(max_cpu_loras or max_loras, max_loras)
        self.clock: RealClock | VirtualClock = clock or VirtualClock()
        self.seed = seed
        self.tokenizer = tokenizer or Tokenizer()
        self.pool = BlockPool(profile.num_gpu_blocks, profile.block_size)
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self.requests: dict[str, SimRequest] = {}
        self.gpu_loras: OrderedDict[str, None] = OrderedDict()
        self.cpu_loras: OrderedDict[str, None] = OrderedDict()
        self.tracked_loras: dict[str, int] = {}
        self.step_hooks: list[Callable[[StepReport], None]] = []
        self.finish_hooks: list[Callable[[SimRequest], None]] = []
        self.admit_hooks: list[Callable[[SimRequest, int], None]] = []
        self.kv_connector: KVConnector | None = None
        self.kv_load_failure_recompute = (
            False  # vLLM's kv_load_failure_policy: "fail" (default) or "recompute"
        )
        self.loading: dict[str, SimRequest] = {}  # WAITING_FOR_REMOTE_KVS
        self.held: dict[str, HeldBlocks] = {}  # finished prefills kept for remote decoders
        self.num_steps = 0
        self.frontend_free_at = 0.0  # when the API server's CPU has worked off its queue
        self._counter = 0
        self._wake = asyncio.Event() if isinstance(self.clock, RealClock) else None

    # ----- requests -----------------------------------------------------------------------------

    def add_request(self, req: SimRequest) -> None:
        """Queue a request now; its output length is drawn here from the profile's distribution."""
        if req.request_id in self.requests:
            raise ValueError(f"duplicate request id {req.request_id}")
        capacity = (self.pool.num_blocks - 1) * self.pool.block_size
        if req.num_prompt_tokens + 1 > min(capacity, self.profile.max_model_len):
            raise ValueError(f"prompt of {req.num_prompt_tokens} tokens does not fit")
        req.max_tokens = max(1, min(req.max_tokens, self.profile.max_model_len - req.num_prompt_tokens))
        req.arrival_time = self.clock.now()
        req.ready_time = self._frontend(req.arrival_time, self.profile.cpu.frontend_per_request_ms)
        req._rng = random.Random(self._request_seed(req))
        if req.ignore_eos:
            req.target_len, req.ends_with_eos = req.max_tokens, False
        else:
            drawn = self._draw_output_len(req._rng)
            req.ends_with_eos = drawn < req.max_tokens
            req.target_len = min(drawn, req.max_tokens)
        self.requests[req.request_id] = req
        self.waiting.append(req)
        if self.kv_connector is not None:
            self.kv_connector.on_new_request(req)
        if self._wake is not None:
            self._wake.set()

    def abort(self, request_id: str) -> None:
        """Drop a request (client went away): its blocks are freed, cached ones stay reusable."""
        req = self.requests.get(request_id)
        if req is None or req.status == FINISHED:
            return
        if req.status == RUNNING:
            self.running.remove(req)
        elif req.status == WAITING_FOR_REMOTE_KVS:
            del self.loading[request_id]
        else:
            self.waiting.remove(req)
        self._finish(req, "abort", None, self.clock.now())

    # ----- remote KV (P/D disaggregation) -------------------------------------------------------

    def finish_load(self, req: SimRequest, ok: bool) -> None:
        """The connector's pull ended: the request computes its last prompt token, or handles the failure.

        On success the pulled blocks are cached like computed ones, and, as vLLM's decoder does
        for a full prompt hit, the last prompt token is recomputed so the next one can be sampled.
        On failure vLLM's kv_load_failure_policy applies: "recompute" prefills locally, "fail"
        (vLLM's default) finishes the request with finish_reason "error" (an HTTP 500).
        """
        if self.loading.pop(req.request_id, None) is None:
            return  # aborted while the KV was on its way
        now = self.clock.now()
        if ok:
            req.num_computed_tokens = req.num_prompt_tokens
            self._commit_full_blocks(req)
            req.num_computed_tokens = req.num_prompt_tokens - 1
            req.kv_loaded = True
        elif self.kv_load_failure_recompute:
            self.pool.release(req.blocks)
            req.blocks = []
            req.num_computed_tokens = 0
            req.num_committed_blocks = 0
            req.num_cached_tokens = -1  # counted again at the next admission, local hits only
            req.num_external_tokens = 0
        else:
            self._finish(req, "error", None, now)
            return
        req.status = WAITING
        self.waiting.appendleft(req)
        if self._wake is not None:
            self._wake.set()

    def take_held(self, request_id: str) -> HeldBlocks | None:
        """A decoder reads a finished prefill's blocks: their lease ends, they stay in use until free_held."""
        return self.held.pop(request_id, None)

    def free_held(self, held: HeldBlocks) -> None:
        """The read is done: the blocks go back to the free queue (their cached prefix stays reusable)."""
        self.pool.release(held.blocks)

    def extend_held(self, request_id: str, until: float) -> None:
        """A decoder's heartbeat: keep the blocks at least until `until`."""
        held = self.held.get(request_id)
        if held is not None:
            held.expires = max(held.expires, until)

    def _reap_expired(self) -> None:
        """Free held blocks whose lease ran out (vLLM's _reap_expired_send_leases)."""
        if not self.held:
            return
        now = self.clock.now()
        for held in [h for h in self.held.values() if now >= h.expires]:
            del self.held[held.request_id]
            self.free_held(held)
            if self.kv_connector is not None:
                self.kv_connector.on_expired(held)

    def _next_expiry(self) -> float | None:
        return min((h.expires for h in self.held.values()), default=None)

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    def _next_ready_time(self) -> float | None:
        """When the head of the waiting queue leaves (or left) the API server, if nothing runs."""
        if self.running or not self.waiting:
            return None
        return self.waiting[0].ready_time

    def frontend_work(self, cost_ms: float) -> float:
        """Queue API-server work arriving now that is neither a request nor its tokens (a
        /metrics render); when it is done. Requests and tokens queued after it wait for it."""
        return self._frontend(self.clock.now(), cost_ms)

    def _frontend(self, submitted: float, cost_ms: float) -> float:
        """Queue `cost_ms` of API-server CPU work submitted at `submitted`; when it is done."""
        done = max(submitted, self.frontend_free_at) + cost_ms / 1000.0
        self.frontend_free_at = done
        return done

    @property
    def num_running(self) -> int:
        return len(self.running)

    @property
    def num_waiting(self) -> int:
        """Waiting requests, those pulling remote KV included (vLLM counts them as deferred)."""
        return len(self.waiting) + len(self.loading)

    def num_deferred(self) -> int:
        return sum(1 for r in self.waiting if r.deferred) + len(self.loading)

    def reset_prefix_cache(self, reset_running_requests: bool = False) -> bool:
        """POST /reset_prefix_cache: refused while requests hold blocks, unless they are preempted first."""
        if reset_running_requests:
            while self.running:
                self._preempt(self.running.pop())
        return self.pool.reset()

    def forget_lora(self, name: str) -> None:
        """An adapter was unloaded through the API: it leaves both caches."""
        self.gpu_loras.pop(name, None)
        self.cpu_loras.pop(name, None)

    # ----- driving the loop ---------------------------------------------------------------------

    def step(self) -> StepReport | None:
        """Run one step in virtual time; None if there was nothing to schedule."""
        assert isinstance(self.clock, VirtualClock), "step() drives a VirtualClock; use run() for real time"
        start = self.clock.t
        batch, duration, loaded = self._schedule_and_cost()
        if batch is None:
            ready = self._next_ready_time()
            if ready is None or ready <= start:
                return None  # nothing is on its way: what waits cannot be scheduled
            self.clock.t = start = ready  # idle until the API server hands over the next request
            batch, duration, loaded = self._schedule_and_cost()
            if batch is None:
                return None
        self.clock.t = start + duration
        return self._complete(batch, start, duration, loaded)

    def advance(self, dt: float) -> None:
        """Run steps for `dt` simulated seconds (the last step may end a little after)."""
        assert isinstance(self.clock, VirtualClock)
        until = self.clock.t + dt
        while self.clock.t < until:
            ready = self._next_ready_time()
            if ready is not None and ready > self.clock.t:
                if ready >= until:
                    self.clock.t = until
                    break
                self.clock.t = ready
            if not self.has_work() or self.step() is None:
                self.clock.t = until
                break
        self._reap_expired()  # leases that ran out while nothing was scheduled

    def run_until_idle(self, max_steps: int = 10_000_000) -> None:
        """Run steps until every request finished (or nothing can be scheduled)."""
        for _ in range(max_steps):
            if not self.has_work() or self.step() is None:
                return

    async def run(self) -> None:
        """The real-time loop: step, sleep until the step's end on the simulated timeline.

        Back-to-back steps start where the previous one ended, not when the event loop got
        round to it: a stall in this process (another replica rendering /metrics, a GC pause)
        delays delivery of the tokens in flight, but does not push the GPU's timeline back for
        good, as it would not on a real server, whose engine runs apart from its API server.
        The catch-up is bounded so a long stall does not turn into a burst of instant steps.
        """
        clock = self.clock
        assert isinstance(clock, RealClock) and self._wake is not None
        previous_end: float | None = None  # end of the last step, while work kept coming
        while True:
            if not self.has_work():
                previous_end = None
                self._wake.clear()
                await self._sleep_until_woken(self._next_expiry())
                self._reap_expired()
                continue
            now = clock.now()
            start = now if previous_end is None else max(previous_end, now - MAX_CATCH_UP_S)
            batch, duration, loaded = self._schedule_and_cost()
            if batch is None:
                previous_end = None
                ready = self._next_ready_time()
                self._wake.clear()
                if ready is None:
                    await self._sleep_until_woken(self._next_expiry())
                    self._reap_expired()
                else:  # the API server is (or was, a moment ago) still on the next request
                    await asyncio.sleep(max(0.0, clock.real_seconds(ready - clock.now())))
                continue
            # never before a request in this batch reached the engine (a token before asking)
            start = max(start, max(req.ready_time for req, _ in batch.scheduled))
            delay = clock.real_seconds(start + duration - clock.now())
            if delay > 0:
                await asyncio.sleep(delay)
            self._complete(batch, start, duration, loaded)
            previous_end = start + duration

    async def _sleep_until_woken(self, deadline: float | None) -> None:
        """Wait for new work, or until `deadline` on the simulated clock (held blocks expire then)."""
        assert isinstance(self.clock, RealClock) and self._wake is not None
        if deadline is None:
            await self._wake.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                self._wake.wait(), max(0.0, self.clock.real_seconds(deadline - self.clock.now()))
            )

    # ----- the scheduler ------------------------------------------------------------------------

    def _schedule_and_cost(self) -> tuple[_Batch | None, float, list[str]]:
        batch = self._schedule()
        if not batch.scheduled:
            return None, 0.0, []
        loaded, load_s = self._activate_loras(batch)
        return batch, self._step_seconds(batch) + load_s, loaded

    def _schedule(self) -> _Batch:
        self._reap_expired()
        budget = self.profile.max_num_batched_tokens
        scheduled: list[tuple[SimRequest, int]] = []
        preempted: list[SimRequest] = []
        examined = 0
        now = self.clock.now()

        index = 0
        while index < len(self.running) and budget > 0:
            req = self.running[index]
            num_new = min(req.num_tokens - req.num_computed_tokens, budget)
            if num_new <= 0:
                index += 1
                continue
            while not self._allocate(req, num_new, []):
                victim = self.running.pop()
                self._preempt(victim)
                preempted.append(victim)
                if victim is req:
                    break
            else:
                scheduled.append((req, num_new))
                budget -= num_new
                index += 1
                continue
            break

        loras = {r.lora for r, _ in scheduled if r.lora}
        if not preempted:
            skipped: list[SimRequest] = []
            while self.waiting and budget > 0 and len(self.running) < self.profile.max_num_seqs:
                req = self.waiting[0]
                if req.ready_time > now:
                    break  # still in the API server (FIFO: so is everything behind it)
                examined += 1
                if req.lora and req.lora not in loras and len(loras) >= self.max_loras:
                    req.deferred = True
                    skipped.append(self.waiting.popleft())
                    continue
                if req.kv_loaded:  # its remote KV arrived: blocks held, the last prompt token is left
                    num_new = min(req.num_tokens - req.num_computed_tokens, budget)
                    if not self._allocate(req, num_new, []):
                        break
                    self.waiting.popleft()
                    req.kv_loaded = False
                    req.status = RUNNING
                    self.running.append(req)
                    scheduled.append((req, num_new))
                    budget -= num_new
                    if req.lora:
                        loras.add(req.lora)
                    continue
                hits = self._cache_hits(req)
                num_cached = len(hits) * self.pool.block_size
                num_external = 0
                if self.kv_connector is not None:
                    num_external = self.kv_connector.num_external_tokens(req, num_cached)
                # a remote-KV load computes nothing now: it only takes the blocks the KV goes into
                num_new = num_external if num_external > 0 else min(req.num_tokens - num_cached, budget)
                req.num_computed_tokens = num_cached
                if not self._allocate(req, num_new, hits):
                    req.num_computed_tokens = 0
                    break
                self.waiting.popleft()
                req.deferred = False
                req.num_committed_blocks = len(hits)
                req.num_admissions += 1
                req.num_external_tokens = num_external
                if req.first_scheduled_time is None:
                    req.first_scheduled_time = now
                    if req.lora:
                        self._track_lora(req.lora, +1)
                if req.num_cached_tokens < 0:
                    req.num_cached_tokens = num_cached + num_external
                for hook in self.admit_hooks:
                    hook(req, num_cached)
                if self.kv_connector is not None:
                    if num_external > 0:
                        req.status = WAITING_FOR_REMOTE_KVS
                        self.loading[req.request_id] = req
                    self.kv_connector.update_state_after_alloc(req, num_external)
                    if num_external > 0:
                        continue
                req.status = RUNNING
                self.running.append(req)
                scheduled.append((req, num_new))
                budget -= num_new
                if req.lora:
                    loras.add(req.lora)
            self.waiting.extendleft(reversed(skipped))
        return _Batch(scheduled, preempted, examined)

    def _cache_hits(self, req: SimRequest) -> list[Block]:
        max_blocks = (req.num_tokens - 1) // self.pool.block_size
        self._extend_hashes(req, max_blocks)
        return self.pool.lookup(req.block_hashes[:max_blocks])

    def _extend_hashes(self, req: SimRequest, num_blocks: int) -> None:
        have = len(req.block_hashes)
        if have >= num_blocks:
            return
        bs = self.pool.block_size
        tokens = req.all_token_ids()[: num_blocks * bs]
        parent = req.block_hashes[-1] if have else None
        req.block_hashes.extend(chain_hashes(tokens, bs, req.lora, have, parent))

    def _allocate(self, req: SimRequest, num_new: int, hits: list[Block]) -> bool:
        """Reserve blocks for this step's tokens only (no watermark), as vLLM V1 does."""
        needed = math.ceil((req.num_computed_tokens + num_new) / self.pool.block_size)
        to_take = needed - len(req.blocks) - len(hits)
        evictable_hits = sum(1 for b in hits if b.ref_cnt == 0)
        if to_take + evictable_hits > self.pool.num_free:
            return False
        self.pool.touch(hits)
        req.blocks.extend(hits)
        if to_take > 0:
            req.blocks.extend(self.pool.take(to_take))
        return True

    def _preempt(self, req: SimRequest) -> None:
        self.pool.release(req.blocks)
        req.blocks = []
        req.num_computed_tokens = 0
        req.num_committed_blocks = 0
        req.num_preemptions += 1
        req.status = WAITING
        self.waiting.appendleft(req)

    def _activate_loras(self, batch: _Batch) -> tuple[list[str], float]:
        """Swap adapters into GPU slots (LRU); a CPU-cache miss also reads from disk."""
        step = self.profile.step
        loaded: list[str] = []
        cost_ms = 0.0
        for name in dict.fromkeys(r.lora for r, _ in batch.scheduled if r.lora):
            if name in self.gpu_loras:
                self.gpu_loras.move_to_end(name)
                continue
            cost_ms += step.lora_gpu_load_ms
            if name in self.cpu_loras:
                self.cpu_loras.move_to_end(name)
            else:
                cost_ms += step.lora_disk_load_ms
                self.cpu_loras[name] = None
                while len(self.cpu_loras) > self.max_cpu_loras:
                    self.cpu_loras.popitem(last=False)
            self.gpu_loras[name] = None
            while len(self.gpu_loras) > self.max_loras:
                self.gpu_loras.popitem(last=False)
            loaded.append(name)
        return loaded, cost_ms / 1000.0

    def _step_seconds(self, batch: _Batch) -> float:
        num_tokens = 0
        decode_context = 0
        prefill_attention = 0.0
        lora_tokens = 0
        for req, num_new in batch.scheduled:
            num_tokens += num_new
            if req.lora is not None:
                lora_tokens += num_new
            if num_new == 1 and req.num_computed_tokens >= req.num_prompt_tokens:
                decode_context += req.num_computed_tokens + 1
            else:
                p = req.num_computed_tokens
                prefill_attention += num_new * p + num_new * num_new / 2
        seconds = self.profile.step.step_seconds(num_tokens, decode_context, prefill_attention)
        if lora_tokens:
            seconds *= self.profile.step.lora_factor
            seconds += self.profile.step.lora_per_token_ms * lora_tokens / 1000.0
        cpu = self.profile.cpu
        cpu_ms = (
            cpu.engine_per_step_ms
            + cpu.engine_per_request_ms * (len(batch.scheduled) - 1)
            + cpu.engine_per_waiting_ms * batch.examined_waiting
        )
        return seconds + cpu_ms / 1000.0

    # ----- end of a step ------------------------------------------------------------------------

    def _complete(self, batch: _Batch, start: float, duration: float, loaded: list[str]) -> StepReport:
        end = start + duration
        itls: list[float] = []
        sampling: list[SimRequest] = []
        for req, num_new in batch.scheduled:
            if req.status != RUNNING:
                continue  # aborted while the step ran
            req.num_computed_tokens += num_new
            self._commit_full_blocks(req)
            if req.num_computed_tokens < req.num_tokens:
                continue  # a prefill chunk: no token yet
            sampling.append(req)
        if sampling:
            # the API server detokenises and streams this step's tokens after what it has queued
            delivered = self._frontend(end, self.profile.cpu.frontend_per_output_token_ms * len(sampling))
            for req in sampling:
                if req.last_token_time is not None and req.num_preemptions == 0:
                    itls.append(delivered - req.last_token_time)
                self._sample(req, delivered)
        self.num_steps += 1
        report = StepReport(start, duration, sum(n for _, n in batch.scheduled), len(batch.preempted), itls,
                            len(sampling), loaded)  # fmt: skip
        for hook in self.step_hooks:
            hook(report)
        return report

    def _commit_full_blocks(self, req: SimRequest) -> None:
        """Cache the blocks the request's computed tokens filled since the last commit."""
        full = req.num_computed_tokens // self.pool.block_size
        if full > req.num_committed_blocks:
            self._extend_hashes(req, full)
            events = self.pool.events
            for i in range(req.num_committed_blocks, full):
                if self.pool.commit(req.blocks[i], req.block_hashes[i]) and events is not None:
                    events.stored(req, i)
            req.num_committed_blocks = full

    def _sample(self, req: SimRequest, now: float) -> None:
        if req.first_token_time is None:
            req.first_token_time = now
        req.last_token_time = now
        n = len(req.output_token_ids) + 1
        if n == req.target_len and req.ends_with_eos:
            token_id, text = EOS_ID, ""
        else:
            token_id = self._next_piece(req)
            text = self.tokenizer.piece(token_id)
        req.output_token_ids.append(token_id)
        finish: str | None = None
        stop_reason: str | None = None
        if req.stop and text:
            tail = req.output_text[-64:]
            window = tail + text
            for s in req.stop:
                at = window.find(s)
                if at >= 0:
                    # keep only the new text before the stop string ('' if it began earlier)
                    text = window[len(tail) : at]
                    finish, stop_reason = "stop", s
                    break
        req.output_text += text
        if finish is None and n >= req.target_len:
            finish = "stop" if req.ends_with_eos else "length"
        event = TokenEvent(token_id, text, now, finish, stop_reason)
        if finish is not None:
            self.running.remove(req)
            self._finish(req, finish, stop_reason, now, event)
        elif req.on_token is not None:
            self._deliver(req.on_token, event)

    def _deliver(self, on_token: Callable[[TokenEvent], None], event: TokenEvent) -> None:
        """Hand a token to the HTTP layer when the API server has it ready (later, in real time)."""
        clock = self.clock
        if isinstance(clock, RealClock) and event.time > clock.now():
            asyncio.get_running_loop().call_later(
                clock.real_seconds(event.time - clock.now()), on_token, event
            )
        else:
            on_token(event)

    def _finish(
        self,
        req: SimRequest,
        reason: str,
        stop_reason: str | None,
        now: float,
        event: TokenEvent | None = None,
    ) -> None:
        req.status = FINISHED
        req.finish_reason = reason
        req.stop_reason = stop_reason
        req.finish_time = now
        lease_s = self.kv_connector.request_finished(req) if self.kv_connector is not None else None
        if lease_s is not None and req.blocks:  # kept for a remote decoder, still counted as used
            self.held[req.request_id] = HeldBlocks(
                req.request_id, req.blocks, req.num_computed_tokens, now + lease_s
            )
        else:
            self.pool.release(req.blocks)
        req.blocks = []
        del self.requests[req.request_id]
        if req.lora and req.first_scheduled_time is not None:
            self._track_lora(req.lora, -1)
        for hook in self.finish_hooks:
            hook(req)
        if req.on_token is not None:
            self._deliver(req.on_token, event or TokenEvent(-1, "", now, reason, stop_reason))

    def _track_lora(self, name: str, delta: int) -> None:
        count = self.tracked_loras.get(name, 0) + delta
        if count > 0:
            self.tracked_loras[name] = count
        else:
            self.tracked_loras.pop(name, None)

    # ----- deterministic sampling ---------------------------------------------------------------

    def _request_seed(self, req: SimRequest) -> int:
        """Same seed + same prompt (or same request seed) gives the same answer."""
        self._counter += 1
        key = (self.seed, req.seed, req.lora, req.prompt_token_ids)
        return xxhash.xxh3_64_intdigest(repr(key).encode())

    def _draw_output_len(self, rng: random.Random) -> int:
        dist = self.profile.output_len
        drawn = round(rng.lognormvariate(math.log(dist.median), dist.sigma))
        return max(dist.min, min(dist.max, drawn))

    def _next_piece(self, req: SimRequest) -> int:
        if not req._pending_pieces:
            assert req._rng is not None
            req._pending_pieces = list(req._rng.choice(self.tokenizer.words))
        return req._pending_pieces.pop(0)
