"""SimReplica and SimFleet: simulated vLLM servers on loopback, started and stopped from asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import random

from aiohttp import web

from inferpool.sim.apis import add_routes
from inferpool.sim.clock import RealClock
from inferpool.sim.config import SimConfig
from inferpool.sim.engine import Engine
from inferpool.sim.kvevents import KVEventQueue, KVEventsConfig, ZmqEventPublisher
from inferpool.sim.metrics import MetricsConfig, SimMetrics
from inferpool.sim.nixl import NixlConnector
from inferpool.sim.profile import load_profile
from inferpool.sim.server import ReplicaState, build_app


class SimReplica:
    """One simulated vLLM server: an engine loop plus its aiohttp app on (host, port)."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        profile = load_profile(config.profile)
        self.engine = Engine(profile, max_loras=config.max_loras, max_cpu_loras=config.max_cpu_loras,
                             clock=RealClock(config.speed), seed=config.seed)  # fmt: skip
        metrics_cfg = MetricsConfig(config.model_name, config.max_loras, config.lora_info_semantics,
                                    engine_index=config.data_parallel_rank)  # fmt: skip
        self.metrics = SimMetrics(self.engine, metrics_cfg)
        self.state = ReplicaState(config, self.engine, self.metrics, config.adapters(),
                                  rng=random.Random(config.seed))  # fmt: skip
        self.kv_connector: NixlConnector | None = None
        if config.kv_transfer is not None:
            self.kv_connector = self.state.kv_connector = NixlConnector(
                config.kv_transfer,
                self.engine,
                self.metrics.enable_nixl(),
                config.kv_interconnect,
                config.host,
            )
        self.port = config.port
        self.kv_events: ZmqEventPublisher | None = None
        if config.kv_events is not None and config.kv_events.publishes:
            self._publish_kv_events(config.kv_events)
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()

    def _publish_kv_events(self, kv_config: KVEventsConfig) -> None:
        """Queue the pool's block events during each step and publish them as one batch at its end."""
        adapter_ids = {name: i + 1 for i, name in enumerate(self.config.adapters())}  # vLLM numbers from 1
        queue = self.engine.pool.events = KVEventQueue(self.engine.pool.block_size, adapter_ids)
        publisher = self.kv_events = ZmqEventPublisher(
            kv_config, self.config.host, self.config.data_parallel_rank
        )
        self.engine.step_hooks.append(lambda _report: publisher.publish(queue.take()))

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def ready(self) -> bool:
        return self.state.ready

    async def start(self) -> None:
        """Bind the port and start the engine; /health answers 503 until the startup delay passed."""
        app = build_app(self.state)
        add_routes(app, self.state)  # /v1/embeddings, /v1/responses, /v1/messages (sim/apis.py)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                                     shutdown_timeout=5.0)  # fmt: skip
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        await site.start()
        if self.kv_events is not None:
            self.kv_events.start()
        if self.config.port == 0:  # the port the system chose (asyncio's server or uvloop's)
            self.port = int(self._runner.addresses[0][1])
        if self.kv_connector is not None:
            self.kv_connector.side_channel_port = self.port  # the side channel shares the HTTP port
            self.kv_connector.start()
        self._tasks.append(asyncio.create_task(self.engine.run(), name=f"sim-engine-{self.port}"))
        if self.config.startup_delay_s > 0:
            self._tasks.append(asyncio.create_task(self._become_ready(), name=f"sim-ready-{self.port}"))
        else:
            self._mark_ready()

    async def _become_ready(self) -> None:
        await asyncio.sleep(self.config.startup_delay_s)
        self._mark_ready()

    def _mark_ready(self) -> None:
        self.state.ready = True
        self._ready.set()

    async def wait_ready(self) -> None:
        """Returns once /health answers 200 (wrap in asyncio.wait_for to bound it)."""
        await self._ready.wait()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests drain (up to the shutdown timeout), stop the engine."""
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()
            if self.state.in_flight:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.state.idle.wait(), 30.0)
            await self._runner.cleanup()
            self._runner = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.kv_connector is not None:
            await self.kv_connector.close()
        if self.kv_events is not None:
            await self.kv_events.stop()


class SimFleet:
    """Several replicas in one event loop."""

    def __init__(self, configs: list[SimConfig]) -> None:
        self.replicas = [SimReplica(c) for c in configs]

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    async def start(self) -> None:
        try:
            for replica in self.replicas:
                await replica.start()
        except BaseException:
            await self.stop()
            raise

    async def wait_ready(self) -> None:
        await asyncio.gather(*(r.wait_ready() for r in self.replicas))

    async def stop(self) -> None:
        await asyncio.gather(*(r.stop() for r in self.replicas), return_exceptions=True)

    async def __aenter__(self) -> SimFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
