"""`inferpool epp`: one InferencePool's Endpoint Picker for Envoy, assembled from the core.

Pools and models come from manifests (`-f`) or, in Kubernetes, from watches; endpoints
from the pool's pods or a static list. The request core, admission and scheduler are the
same objects the built-in gateway uses; only the data plane (ext_proc) differs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from inferpool.admission import Admission, AdmissionConfig
from inferpool.admission.flowcontrol import build_flow_controller
from inferpool.extproc.metrics_http import metrics_app, static_token
from inferpool.extproc.server import GrpcConfig, GrpcServers
from inferpool.observe.admin import DecisionLog, decision_from_record
from inferpool.observe.metrics import GatewayMetrics, RequestObservation
from inferpool.request.director import Director, RequestRecord
from inferpool.scheduling import Scheduler, load_scheduler
from inferpool.scheduling.config import load_flow_control
from inferpool.scrape.kvevents import kv_event_subscriber
from inferpool.scrape.readiness import Readiness
from inferpool.scrape.scraper import ScrapeConfig, Scraper
from inferpool.sources.static import StaticSource, load_endpoints_file
from inferpool.state import Datastore

log = logging.getLogger(__name__)


@dataclass
class EppConfig:
    """Flags of `inferpool epp`, named after the upstream EPP binary's where they exist."""

    pool_name: str | None = None
    pool_namespace: str = "default"
    pool_group: str = "inference.networking.k8s.io"
    manifests: list[Path] = field(default_factory=list)  # -f: pools/models from files, not Kubernetes
    endpoints_file: Path | None = None  # --endpoints: static endpoints instead of pods
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9090
    metrics_auth: bool = True
    metrics_token: str | None = None  # standalone bearer token; None = generate one
    refresh_metrics_interval_s: float = 0.05
    metrics_staleness_threshold_s: float = 2.0
    config_file: Path | None = None  # EndpointPickerConfig, or a built-in profile name via scheduler
    scheduler: str = "default"
    sync_timeout_s: float = 60.0
    endpoints_grace_s: float = 5.0  # wait this long for a first ready endpoint before SERVING
    kubeconfig: str | None = None  # Kubernetes mode: None = in-cluster, else ~/.kube/config or KUBECONFIG
    leader_election: bool = False  # --ha-enable-leader-election: only the Lease holder writes status

    @property
    def kubernetes_mode(self) -> bool:
        return self.pool_name is not None and not self.manifests


class EppApp:
    """Owns every long-lived part; `start()` returns once serving, `stop()` drains and closes."""

    def __init__(self, config: EppConfig, datastore: Datastore | None = None) -> None:
        self.config = config
        self.datastore = datastore or Datastore()
        self.metrics = GatewayMetrics(self.datastore)
        self.decisions = DecisionLog()  # for the dashboard on the metrics port
        scheduler_source: str = str(config.config_file) if config.config_file else config.scheduler
        schedulers: dict[str, Scheduler] = {}

        def scheduler_for(pool: str) -> Scheduler:
            if pool not in schedulers:
                schedulers[pool] = load_scheduler(scheduler_source)
            return schedulers[pool]

        load_scheduler(scheduler_source)  # fail at start on a bad config, not on the first request
        admission = Admission(AdmissionConfig())
        # featureGates: [flowControl] in the profile
        self.flow_control = build_flow_controller(
            load_flow_control(scheduler_source), self.datastore, admission.detector
        )
        self.director = Director(self.datastore, scheduler_for, admission, flow_control=self.flow_control)
        if self.flow_control is not None:
            self.metrics.watch_flow_control(self.flow_control)
        self.pool_key: str | None = None
        self.grpc = GrpcServers(self, self._current_pool, config.grpc)
        # In Kubernetes, tokens are reviewed by the API server unless a static one is given.
        generate = config.metrics_auth and not config.kubernetes_mode
        self.metrics_token = config.metrics_token or (secrets.token_urlsafe(24) if generate else None)
        self._kube_reviewer: Callable[[str], Awaitable[bool]] | None = None
        # No HealthProber here: in front of Envoy the proxy's own health checks (the GKE load
        # balancer reads HealthCheckPolicy itself) and pod readiness decide, as with upstream's EPP.
        readiness = Readiness()
        self.scraper = Scraper(
            self.datastore,
            ScrapeConfig(
                interval_s=config.refresh_metrics_interval_s,
                stale_after_s=config.metrics_staleness_threshold_s,
            ),
            readiness,
        )
        # KV-cache events for precise prefix scoring; None unless the profile has a plugin that reads them
        self.kv_events = kv_event_subscriber(self.datastore, scheduler_for, load_scheduler(scheduler_source))
        self._sources: list[Any] = []
        self._runner: web.AppRunner | None = None
        self.metrics_port = 0
        self._unsubscribe = self.director.subscribe(self._record)

    # -- the Router the ext_proc streams call ----------------------------------------
    async def route(
        self, pool: str, path: str, headers: Any, body: bytes, subset: frozenset[str] | None = None
    ) -> Any:
        routed = await self.director.route_async(pool, path, headers, body, subset)
        self.metrics.request_started(routed.incoming_model)
        return routed

    def _record(self, record: RequestRecord) -> None:
        if record.attempts > 0:
            self.metrics.request_finished(record.model)
        self.metrics.observe(RequestObservation.from_record(record))
        self.decisions.add(decision_from_record(record))

    def _current_pool(self) -> str | None:
        if self.pool_key is None or self.datastore.pool(self.pool_key) is None:
            return None
        return self.pool_key

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        await self.grpc.start()
        await self._start_metrics()
        await self._start_sources()
        await self.scraper.start()
        if self.kv_events is not None:
            await self.kv_events.start()
        self.pool_key = await self._wait_for_pool()
        await self._wait_for_endpoints(self.pool_key, self.config.endpoints_grace_s)
        await self.grpc.mark_ready()

    async def _start_sources(self) -> None:
        if self.config.manifests:
            from inferpool.sources.manifest import ManifestSource

            source = ManifestSource([str(p) for p in self.config.manifests], self.datastore)
            await _maybe_await(source.start())
            self._sources.append(source)
        elif self.config.pool_name is not None and not self.datastore.pools():
            await self._start_kubernetes(self.config.pool_name)
        if self.config.endpoints_file is not None:
            static = StaticSource(self.datastore, load_endpoints_file(self.config.endpoints_file))
            static.start()
            self._sources.append(static)

    async def _start_kubernetes(self, pool_name: str) -> None:
        from inferpool.extproc.kube_auth import KubeTokenReviewer
        from inferpool.sources.kubernetes import KubernetesConfig, KubernetesSource
        from inferpool.sources.kubernetes.client import connect
        from inferpool.sources.kubernetes.leader import LeaderElector

        api = await connect(self.config.kubeconfig)
        may_write: Callable[[], bool] = lambda: True  # noqa: E731
        elector: LeaderElector | None = None
        if self.config.leader_election:
            elector = LeaderElector(api, self.config.pool_namespace, f"{pool_name}-epp-leader")
            elector.start()
            may_write = elector.is_leader
        kube = KubernetesSource(
            self.datastore,
            KubernetesConfig(pool_name, self.config.pool_namespace, self.config.pool_group),
            api,
            may_write_status=may_write,
        )
        kube.owns_api = True
        if elector is not None:
            elector.on_elected = kube.refresh_status
        await kube.start()
        self._sources.append(kube)
        if elector is not None:
            # stopped before kube (reversed order), so it releases the Lease while the client is open
            self._sources.append(elector)
        if self.config.metrics_auth and self.metrics_token is None:
            self._kube_reviewer = KubeTokenReviewer(api)

    async def _check_token(self, token: str) -> bool:
        if self.metrics_token is not None:
            return static_token(self.metrics_token)(token) is True
        if self._kube_reviewer is not None:
            return await self._kube_reviewer(token)
        return False  # Kubernetes mode before the API client exists

    async def _wait_for_pool(self) -> str:
        """The pool this EPP serves: --pool-name, or the only pool in the manifests."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.sync_timeout_s
        while True:
            if self.config.pool_name is not None:
                pool = self.datastore.find_pool(self.config.pool_name, self.config.pool_namespace)
                if pool is not None:
                    return pool.key
            else:
                pools = self.datastore.pools()
                if len(pools) == 1:
                    return pools[0].key
                if len(pools) > 1:
                    names = ", ".join(p.key for p in pools)
                    raise ValueError(f"several InferencePools ({names}): choose one with --pool-name")
            if loop.time() > deadline:
                raise TimeoutError(f"InferencePool {self.config.pool_name or '(any)'} not found")
            await asyncio.sleep(0.05)

    async def _wait_for_endpoints(self, pool: str, grace_s: float) -> None:
        """Give the first scrapes a moment, so the first requests do not meet an empty pool."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while loop.time() < deadline:
            if self.datastore.ready_endpoints(pool):
                return
            await asyncio.sleep(0.02)

    async def _start_metrics(self) -> None:
        check = self._check_token if self.config.metrics_auth or self.metrics_token else None
        app = metrics_app(
            self.metrics,
            check,
            lambda: self._current_pool() is not None,
            dashboard=(self.datastore, self.decisions, self.metrics_token),
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.config.metrics_host, self.config.metrics_port, reuse_address=True
        )
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.metrics_port = int(sockets[0].getsockname()[1]) if sockets else self.config.metrics_port

    async def stop(self) -> None:
        await self.grpc.mark_ready(False)
        await self.grpc.stop()
        for source in reversed(self._sources):
            await _maybe_await(source.stop())
        await self.scraper.stop()
        if self.kv_events is not None:
            await self.kv_events.stop()
        if self.flow_control is not None:
            self.flow_control.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._unsubscribe()


async def _maybe_await(value: object) -> None:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        await value


def listening_lines(app: EppApp) -> list[str]:
    cfg = app.config
    scheme = "grpcs" if cfg.grpc.secure else "grpc"
    pool = app.datastore.pool(app.pool_key) if app.pool_key else None
    lines = [
        f"inferpool epp: pool {app.pool_key} (failureMode {pool.failure_mode if pool else '?'})",
        f"  ext_proc  {scheme}://{cfg.grpc.host}:{app.grpc.port}",
        f"  health    grpc://{cfg.grpc.host}:{app.grpc.health_port}",
        f"  metrics   http://{cfg.metrics_host}:{app.metrics_port}/metrics",
    ]
    if app.metrics_token and not cfg.metrics_token:
        lines.append(f"  metrics bearer token: {app.metrics_token}")
    return lines


async def serve(config: EppConfig, stop: asyncio.Event, printer: Callable[[str], None] = print) -> None:
    """Run until `stop` is set (SIGINT/SIGTERM in the CLI), then shut down cleanly."""
    app = EppApp(config)
    try:
        await app.start()
        for line in listening_lines(app):
            printer(line)
        await stop.wait()
    finally:
        await app.stop()
