"""`bench simulate`: the real Director + scheduler over simulated engines in virtual time.

No sockets and no sleeping: arrivals and engine steps are events in one time-ordered loop.
Each engine has its own VirtualClock; a busy engine's next step is due when its clock says.
Endpoint metrics are refreshed from the engines every `scrape_interval` simulated seconds, as
a scraper would, so the scheduler sees slightly stale state exactly like in production.
Each response reaches the Director as SSE bytes at the simulated times a gateway would relay
them (the first token, then a usage chunk and `[DONE]` at the finish), so its records and the
scheduler's `on_finished` hook see the same TTFT and token counts as in a live run.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import orjson

from inferpool.admission import AdmissionConfig
from inferpool.bench.client import RequestResult
from inferpool.bench.workloads import BenchRequest
from inferpool.errors import InferenceError
from inferpool.request.core import Core, CoreConfig
from inferpool.request.director import RoutedRequest
from inferpool.scrape.kvevents import apply_events, index_consumers
from inferpool.sim.clock import VirtualClock
from inferpool.sim.engine import Engine, SimRequest, TokenEvent
from inferpool.sim.kvevents import KVEventQueue
from inferpool.sim.profile import HardwareProfile, load_profile
from inferpool.state import Datastore, Endpoint, EndpointMetrics, Objective, Pool, PoolBinding
from inferpool.tokenization import Tokenizer

POOL = "default/bench"
OBJECTIVE_PRIORITIES = {"critical": 1, "standard": 0, "sheddable": -1}


@dataclass
class VirtualRun:
    results: list[RequestResult]
    sim_seconds: float
    wall_seconds: float
    decision_seconds: list[float]
    # At the end, per endpoint: the blocks its engine caches, and those the core's KV-event
    # index holds for it (empty unless the profile reads KV events).
    cached_blocks: dict[str, int] = field(default_factory=dict)
    index_blocks: dict[str, int] = field(default_factory=dict)

    @property
    def wall_per_sim_second(self) -> float:
        return self.wall_seconds / self.sim_seconds if self.sim_seconds else 0.0


def simulate(
    trace: list[BenchRequest],
    replicas: int,
    profile: str = "default",
    scrape_interval: float = 0.05,
    seed: int = 0,
    speeds: Sequence[float] | None = None,
    hardware: HardwareProfile | None = None,
    cache_sizes_known: bool = True,
) -> VirtualRun:
    """Route `trace` with scheduler `profile` over `replicas` engines; everything in simulated seconds.

    `speeds` makes the pool heterogeneous: replica i's steps take 1 / speeds[i] times as long
    (0.5: a GPU half as fast); replicas past its end run at 1. `hardware` is the engines' sim
    profile (default llama-3.1-8b-h100), e.g. with a smaller batch or KV cache.
    `cache_sizes_known=False` scrapes no KV-cache size (as from an engine that exports no
    vllm:cache_config_info): the approximate prefix index then assumes its configured capacity.
    """
    hw = hardware or load_profile("llama-3.1-8b-h100")
    tokenizer = Tokenizer()
    store = Datastore()
    store.upsert_pool(Pool(namespace="default", name="bench", selector={"app": "bench"}, target_ports=[8000]))
    for name, priority in OBJECTIVE_PRIORITIES.items():  # named by the criticality-overload workload
        store.upsert_objective(Objective("default", name, PoolBinding(("bench",)), priority))
    engines: dict[str, Engine] = {}
    for i in range(replicas):
        ep = Endpoint(
            name=f"r{i}", address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", port=8000, pool=POOL
        )
        store.upsert_endpoint(ep)
        speed = speeds[i] if speeds is not None and i < len(speeds) else 1.0
        engines[ep.name] = Engine(
            _slowed(hw, speed),
            max_loras=4,
            max_cpu_loras=8,
            clock=VirtualClock(),
            seed=seed + i,
            tokenizer=tokenizer,
        )
    now = [0.0]
    # The same core the gateway and the EPP assemble, on simulated time: no sources, no scraping
    # (scrape() below fills the metrics), no admission (the workloads measure routing).
    core = Core(
        CoreConfig(scheduler=profile, admission=AdmissionConfig(enabled=False), scrape=None),
        datastore=store,
        clock=lambda: now[0],
        rng=random.Random(seed),
    )
    for i, plugin in enumerate(core.scheduler_for(POOL).plugins()):
        rng = getattr(plugin, "rng", None)  # tie-breaking pickers: same seed, same run
        if isinstance(rng, random.Random):
            rng.seed(f"{seed}:{i}")
    director = core.director
    _publish_kv_events(core, store, engines)
    busy: list[tuple[float, int, str]] = []  # (engine clock, tiebreak, endpoint name)
    queued: set[str] = set()
    counter = 0
    results: list[RequestResult] = []
    decisions: list[float] = []
    next_scrape = 0.0

    def relay(routed: RoutedRequest, sim: SimRequest, res: RequestResult) -> Callable[[TokenEvent], None]:
        """The engine's per-token callback for one request: stream it to the Director as a gateway would."""
        streaming = False

        def on_token(event: TokenEvent) -> None:
            nonlocal streaming
            if streaming and event.finish_reason is None:
                return
            now[0] = event.time
            if not streaming:
                streaming = True
                routed.response_started(200, "text/event-stream")
                routed.response_data(_sse({"choices": [{"index": 0, "text": event.text}]}))
            if event.finish_reason is None:
                return
            cached = max(0, sim.num_cached_tokens)
            usage = {
                "prompt_tokens": sim.num_prompt_tokens,
                "completion_tokens": len(sim.output_token_ids),
                "prompt_tokens_details": {"cached_tokens": cached},
            }
            routed.response_data(_sse({"choices": [], "usage": usage}) + b"data: [DONE]\n\n")
            res.ttft = (sim.first_token_time or now[0]) - res.sent_at
            res.e2e = (sim.finish_time or now[0]) - res.sent_at
            res.output_tokens = len(sim.output_token_ids)
            res.prompt_tokens = sim.num_prompt_tokens
            res.cached_tokens = cached
            routed.finish(200)

        return on_token

    def scrape() -> None:
        for ep in store.endpoints(POOL):
            eng = engines[ep.name]
            ep.metrics = EndpointMetrics(
                waiting_queue_size=eng.num_waiting,
                running_requests=eng.num_running,
                kv_cache_usage=eng.pool.usage(),
                active_adapters=frozenset(eng.gpu_loras),
                max_active_adapters=4,
                # what the scraper reads off vllm:cache_config_info (the approximate prefix
                # index sizes each endpoint's LRU by it)
                cache_block_size=eng.pool.block_size if cache_sizes_known else None,
                cache_num_blocks=eng.pool.num_blocks if cache_sizes_known else None,
                scraped_at=time.monotonic(),
            )

    def run_engines_until(t: float) -> None:
        while busy and busy[0][0] <= t:
            _, _, name = heapq.heappop(busy)
            queued.discard(name)
            eng = engines[name]
            now[0] = eng.clock.now()
            if eng.step() is not None and eng.has_work():
                push(name)

    def push(name: str) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(busy, (engines[name].clock.now(), counter, name))
        queued.add(name)

    wall_start = time.perf_counter()
    for req in trace:
        while next_scrape <= req.at:
            run_engines_until(next_scrape)
            now[0] = next_scrape
            scrape()
            next_scrape += scrape_interval
        run_engines_until(req.at)
        now[0] = req.at
        res = RequestResult(req.index, req.tag, 200, req.at)
        results.append(res)
        body = orjson.dumps(req.body)
        t0 = time.perf_counter()
        try:
            routed = director.route(POOL, req.path, req.headers, body)
        except InferenceError as exc:
            decisions.append(time.perf_counter() - t0)
            res.status, res.error = exc.status, str(exc)
            continue
        endpoint = routed.candidates[0]
        routed.dispatched(endpoint)
        decisions.append(time.perf_counter() - t0)
        eng = engines[endpoint.name]
        if eng.clock.now() < req.at:
            eng.clock.t = req.at  # type: ignore[union-attr]
        text = req.body.get("prompt") or "\n".join(
            f"{m['role']}: {m['content']}" for m in req.body["messages"]
        )
        model = req.body["model"]
        sim_req = SimRequest(
            request_id=str(req.index),
            prompt_token_ids=tokenizer.encode(text),
            max_tokens=int(req.body.get("max_tokens", 128)),
            lora=None if model.startswith(("meta-llama", "/")) else model,
            ignore_eos=True,
        )
        sim_req.on_token = relay(routed, sim_req, res)
        eng.add_request(sim_req)
        if endpoint.name not in queued:
            push(endpoint.name)
    run_engines_until(float("inf"))
    run = VirtualRun(results, now[0], time.perf_counter() - wall_start, decisions)
    run.cached_blocks = {name: len(engine.pool.cached) for name, engine in engines.items()}
    if core.kv_events is not None:
        index, settings = core.kv_events.index, core.kv_events.settings
        run.index_blocks = {ep.name: index.size(settings.source(ep)) for ep in store.endpoints(POOL)}
    return run


def _publish_kv_events(core: Core, store: Datastore, engines: dict[str, Engine]) -> None:
    """Where the profile reads KV-cache events (precise prefix scoring): each engine's block
    events reach the core's index at the end of the step that made them, as one batch, as a
    replica publishing them over ZMQ delivers them (less the network's fraction of a
    millisecond), and every stream is live from the start."""
    subscriber = core.kv_events
    if subscriber is None:
        return
    index = subscriber.index
    for consumer in index_consumers(core.scheduler_for(POOL)):
        consumer.bind_kv_index(index)
    for endpoint in store.endpoints(POOL):
        engine = engines[endpoint.name]
        queue = engine.pool.events = KVEventQueue(engine.pool.block_size)
        source = subscriber.settings.source(endpoint)
        index.set_live(source, True)

        def publish(_report: object, queue: KVEventQueue = queue, source: str = source) -> None:
            apply_events(index, source, queue.take())

        engine.step_hooks.append(publish)


def _sse(event: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def _slowed(hw: HardwareProfile, speed: float) -> HardwareProfile:
    """`hw` with every step-time term divided by `speed`."""
    if speed == 1.0:
        return hw
    if not speed > 0:
        raise ValueError(f"replica speed must be positive, got {speed}")
    step = hw.step
    slower = step.model_copy(
        update={
            "base_ms": step.base_ms / speed,
            "per_token_ms": step.per_token_ms / speed,
            "per_context_token_ms": step.per_context_token_ms / speed,
            "per_prefill_attention_ms": step.per_prefill_attention_ms / speed,
        }
    )
    return hw.model_copy(update={"name": f"{hw.name}@{speed:g}", "step": slower})
