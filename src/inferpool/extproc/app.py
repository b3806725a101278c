"""`inferpool epp`: one InferencePool's Endpoint Picker for Envoy, assembled from the core.

Pools and models come from manifests (`-f`) or, in Kubernetes, from watches; endpoints
from the pool's pods or a static list. The request core, admission and scheduler are the
same objects the built-in gateway uses; only the data plane (ext_proc) differs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
from aiohttp import web

from inferpool.extproc.server import GrpcConfig, GrpcServers
from inferpool.heap import freeze_startup_heap
from inferpool.observe.admin import AdminAuth, admin_app
from inferpool.observe.kvindex_view import kv_index_view
from inferpool.observe.metrics import GatewayMetrics
from inferpool.observe.observation import Observation
from inferpool.observe.tracing import Tracing
from inferpool.request.core import Core, CoreConfig, KubernetesSettings
from inferpool.scrape.engines import EngineMap
from inferpool.scrape.scraper import ScrapeConfig
from inferpool.sources.static import load_endpoints_file
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
    metrics_token_generated: bool = False  # `--workers`: the token above was generated for them (print it)
    refresh_metrics_interval_s: float = 0.05
    metrics_staleness_threshold_s: float = 2.0
    model_server_metrics_path: str = "/metrics"  # --model-server-metrics-path
    model_server_metrics_port: int | None = None  # --model-server-metrics-port; None: the serving port
    model_server_metrics_scheme: str = "http"  # --model-server-metrics-scheme
    model_server_tls_verify: bool = True  # not --model-server-metrics-https-insecure-skip-verify
    metric_map: EngineMap | None = None  # upstream's metric flags: series read in place of vLLM's
    config_file: Path | None = None  # EndpointPickerConfig, or a built-in profile name via scheduler
    scheduler: str = "default"
    sync_timeout_s: float = 60.0
    endpoints_grace_s: float = 5.0  # wait this long for a first ready endpoint before SERVING
    kubeconfig: str | None = None  # Kubernetes mode: None = in-cluster, else ~/.kube/config or KUBECONFIG
    leader_election: bool = False  # --ha-enable-leader-election: only the Lease holder writes status
    route_namespaces: tuple[str, ...] = ()  # --route-namespace: HTTPRoutes to the pool from other namespaces
    workers: int = 1  # --workers: processes sharing the gRPC ports (extproc/workers.py)
    worker_index: int = 0  # which of them this process is
    # Worker 0 of several: the Unix sockets of the other workers' /metrics, merged into its own.
    peer_metrics: tuple[Path, ...] = ()
    metrics_socket: Path | None = None  # the other workers: /metrics on this Unix socket, no port
    otlp_traces_endpoint: str | None = None  # --otlp-traces-endpoint: spans over OTLP/gRPC; None: off
    fleet_speed: float = 1.0  # --fleet-speed: a simulated fleet's --speed (intervals scale by 1/speed)

    @property
    def kubernetes_mode(self) -> bool:
        return self.pool_name is not None and not self.manifests


class EppApp:
    """Owns every long-lived part; `start()` returns once serving, `stop()` drains and closes."""

    def __init__(self, config: EppConfig, datastore: Datastore | None = None) -> None:
        self.config = config
        kubernetes = (
            KubernetesSettings(
                config.pool_name,
                config.pool_namespace,
                config.pool_group,
                config.kubeconfig,
                config.leader_election,
                config.route_namespaces,
            )
            if config.kubernetes_mode and config.pool_name is not None
            else None
        )
        # No HealthProber here: in front of Envoy the proxy's own health checks (the GKE load
        # balancer reads HealthCheckPolicy itself) and pod readiness decide, as with upstream's EPP.
        self.core = Core(
            CoreConfig(
                scheduler=str(config.config_file) if config.config_file else config.scheduler,
                scrape=ScrapeConfig(
                    interval_s=config.refresh_metrics_interval_s,
                    stale_after_s=config.metrics_staleness_threshold_s,
                    metrics_path=config.model_server_metrics_path,
                    metrics_port=config.model_server_metrics_port,
                    scheme=config.model_server_metrics_scheme,
                    verify_tls=config.model_server_tls_verify,
                    default_map=config.metric_map,
                ),
                manifests=list(config.manifests),
                endpoints=load_endpoints_file(config.endpoints_file) if config.endpoints_file else (),
                kubernetes=kubernetes,
                fleet_speed=config.fleet_speed,
            ),
            datastore=datastore,
        )
        self.datastore = self.core.datastore
        self.director = self.core.director
        endpoint = config.otlp_traces_endpoint
        self.tracing = Tracing.otlp(endpoint, "inferpool-epp", "epp") if endpoint else None
        self.observation = Observation(self.datastore, tracing=self.tracing)
        self.observation.attach(self.director, self.core.flow_control)
        self.pool_key: str | None = None
        # the sampling budget is per second of the fleet's time, like every other interval
        grpc_config = replace(
            config.grpc,
            response_samples_per_second=config.grpc.response_samples_per_second * config.fleet_speed,
        )
        self.grpc = GrpcServers(
            self.director, self._current_pool, grpc_config, lambda: self.core.guards, self.tracing
        )
        self.observation.metrics.watch_counts(
            "inferpool_extproc_messages",
            "ext_proc messages the picker received, by kind (response_body ones cost CPU per chunk).",
            "kind",
            lambda: self.grpc.processor.messages,
        )
        self.observation.metrics.watch_counts(
            "inferpool_extproc_streams",
            "ext_proc streams (requests) this picker process served, by worker (`--workers`).",
            "worker",
            lambda: {str(config.worker_index): self.grpc.processor.streams},
        )
        # In Kubernetes, tokens are reviewed by the API server unless a static one is given.
        generate = config.metrics_auth and not config.kubernetes_mode
        self.metrics_token = config.metrics_token or (secrets.token_urlsafe(24) if generate else None)
        self._runner: web.AppRunner | None = None
        self.metrics_port = 0

    @property
    def metrics(self) -> GatewayMetrics:
        return self.observation.metrics

    def _current_pool(self) -> str | None:
        if self.pool_key is None or self.datastore.pool(self.pool_key) is None:
            return None
        return self.pool_key

    def _not_ready(self) -> str | None:
        """The EPP's readiness rule (docs/epp.md): its InferencePool has synced."""
        return None if self._current_pool() is not None else "the InferencePool has not synced yet"

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        await self.grpc.start()
        await self.core.start()
        await self._start_admin()
        self.pool_key = await self._wait_for_pool()
        await self._wait_for_endpoints(self.pool_key, self.config.endpoints_grace_s)
        await self.grpc.mark_ready()

    def _auth(self) -> AdminAuth:
        review = None
        if self.config.metrics_auth and self.metrics_token is None and self.core.kube_api is not None:
            from inferpool.extproc.kube_auth import KubeTokenReviewer

            review = KubeTokenReviewer(self.core.kube_api)
        if not self.config.metrics_auth and not self.metrics_token:
            return AdminAuth()
        if self.metrics_token is None and review is None:
            # Kubernetes mode before an API client exists: nothing may read metrics.
            return AdminAuth(review=_deny)
        return AdminAuth(static_token=self.metrics_token, review=review)

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

    async def _peer_expositions(self) -> list[str]:
        """The other workers' metrics (worker 0 of `--workers N` serves the sum on the public port)."""
        headers = {"Authorization": f"Bearer {self.metrics_token}"} if self.metrics_token else {}
        timeout = aiohttp.ClientTimeout(total=5)

        async def one(path: Path) -> str:
            connector = aiohttp.UnixConnector(path=str(path))
            async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as http:
                try:
                    async with http.get("http://worker/metrics") as resp:
                        if resp.status == 200:
                            return await resp.text()
                        log.warning(
                            "worker metrics at %s answered %d; left out of this scrape", path, resp.status
                        )
                except (aiohttp.ClientError, TimeoutError):
                    log.warning("worker metrics at %s unreachable; left out of this scrape", path)
                return ""

        return list(await asyncio.gather(*(one(path) for path in self.config.peer_metrics)))

    async def _start_admin(self) -> None:
        app = admin_app(
            self.datastore,
            self.observation.metrics,
            self.observation.decisions,
            self._not_ready,
            self._auth(),
            peers=self._peer_expositions if self.config.peer_metrics else None,
            kv_index=kv_index_view(self.core),
        )
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site: web.BaseSite
        if self.config.metrics_socket is not None:
            self.config.metrics_socket.unlink(missing_ok=True)  # left by a worker that died
            site = web.UnixSite(self._runner, str(self.config.metrics_socket))
        else:
            site = web.TCPSite(
                self._runner, self.config.metrics_host, self.config.metrics_port, reuse_address=True
            )
        await site.start()
        if self.config.metrics_socket is None:
            sockets = getattr(site._server, "sockets", None) or []
            self.metrics_port = int(sockets[0].getsockname()[1]) if sockets else self.config.metrics_port

    async def stop(self) -> None:
        await self.grpc.mark_ready(False)
        await self.grpc.stop()
        await self.core.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        self.observation.detach()
        if self.tracing is not None:
            await self.tracing.close()


async def _deny(_token: str) -> bool:
    return False


def listening_lines(app: EppApp) -> list[str]:
    cfg = app.config
    scheme = "grpcs" if cfg.grpc.secure else "grpc"
    pool = app.datastore.pool(app.pool_key) if app.pool_key else None
    lines = [
        f"inferpool epp: pool {app.pool_key} (failureMode {pool.failure_mode if pool else '?'})",
        f"  ext_proc  {scheme}://{cfg.grpc.host}:{app.grpc.port}",
        f"  health    grpc://{cfg.grpc.host}:{app.grpc.health_port}",
        f"  metrics   unix:{cfg.metrics_socket} /metrics"
        if cfg.metrics_socket is not None
        else f"  metrics   http://{cfg.metrics_host}:{app.metrics_port}/metrics",
    ]
    if cfg.otlp_traces_endpoint:
        lines.append(f"  traces    OTLP/gRPC to {cfg.otlp_traces_endpoint}")
    if app.metrics_token and (not cfg.metrics_token or cfg.metrics_token_generated):
        lines.append(f"  metrics bearer token: {app.metrics_token}")
    return lines


async def serve(
    config: EppConfig, stop: asyncio.Event, on_ready: Callable[[list[str]], None] | None = None
) -> None:
    """Run until `stop` is set (SIGINT/SIGTERM in the CLI), then shut down cleanly.

    `on_ready` gets the lines saying where it listens, once it serves (default: print them).
    """
    app = EppApp(config)
    try:
        await app.start()
        freeze_startup_heap()
        lines = listening_lines(app)
        if on_ready is not None:
            on_ready(lines)
        else:
            for line in lines:
                print(line, flush=True)
        await stop.wait()
    finally:
        await app.stop()
