"""One gateway process put together: manifests -> datastore, endpoints, scraping, core, listeners.

`inferpool serve` and `inferpool up` both run a GatewayRuntime; they differ only in where
the endpoints come from (an endpoints file vs. simulated replicas the caller started).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from inferpool.admission import Admission, AdmissionConfig
from inferpool.admission.flowcontrol import build_flow_controller
from inferpool.api import ManifestSet
from inferpool.gateway.config import ServeConfig
from inferpool.gateway.manifests import listeners_of, route_of
from inferpool.gateway.routing import HTTPRoute, Listener, RouteTable, TLSConfig
from inferpool.gateway.server import GatewayServer
from inferpool.guard.attach import GuardSet
from inferpool.observe.accesslog import AccessLog
from inferpool.request.director import Director, DirectorConfig
from inferpool.scheduling import Scheduler, load_scheduler
from inferpool.scheduling.config import load_flow_control
from inferpool.scrape import ScrapeConfig, Scraper
from inferpool.scrape.health import HealthProber
from inferpool.scrape.kvevents import kv_event_subscriber
from inferpool.sources.manifest import ManifestSource
from inferpool.sources.static import StaticEndpoint, StaticSource
from inferpool.state import Datastore

log = logging.getLogger(__name__)

SERVICE_LABEL = "inferpool.io/service"  # endpoints-file label naming the Service an entry belongs to


@dataclass(frozen=True)
class RuntimeConfig:
    serve: ServeConfig = field(default_factory=ServeConfig)
    profile: str | None = None  # scheduler: built-in profile name or EndpointPickerConfig path
    scrape: ScrapeConfig = field(default_factory=ScrapeConfig)
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    access_log: bool = True
    base_models: dict[str, str] = field(default_factory=dict)  # pool key -> base model (for /v1/models)


def gateway_objects(manifests: ManifestSet) -> tuple[list[Listener], list[HTTPRoute]]:
    """Listeners of every Gateway and the HTTPRoutes (in file order, which breaks precedence ties)."""

    def tls(namespace: str, name: str) -> TLSConfig | None:
        secret = manifests.find_secret(name, namespace)
        return TLSConfig(secret.cert_pem.encode(), secret.key_pem.encode()) if secret else None

    listeners = [lis for g in manifests.gateways for lis in listeners_of(g, tls)]
    routes = [route_of(r, i) for i, r in enumerate(manifests.routes)]
    return listeners, routes


def service_addresses(endpoints: Iterable[StaticEndpoint]) -> dict[str, list[tuple[str, int]]]:
    """Service backends: endpoints-file entries labelled `inferpool.io/service: [ns/]name`."""
    out: dict[str, list[tuple[str, int]]] = {}
    for e in endpoints:
        service = e.labels.get(SERVICE_LABEL)
        if service and e.port is not None:
            key = service if "/" in service else f"default/{service}"
            out.setdefault(key, []).append((e.address, e.port))
    return out


class GatewayRuntime:
    """Owns the datastore and every long-running part of one gateway; start() then stop().

    Pools, models, objectives, rewrites and HTTPRoutes follow edits of the manifest files;
    listeners are bound once (changing a Gateway needs a restart).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        config: RuntimeConfig | None = None,
        endpoints: Iterable[StaticEndpoint] = (),
    ) -> None:
        self.config = config or RuntimeConfig()
        self.endpoints = list(endpoints)
        self.datastore = Datastore()
        self._schedulers: dict[str, Scheduler] = {}
        load_scheduler(self.config.profile)  # fail now (ConfigError lists the problems), not per request
        admission = Admission(self.config.admission)
        # featureGates: [flowControl] in the profile
        self.flow_control = build_flow_controller(
            load_flow_control(self.config.profile), self.datastore, admission.detector
        )
        self.director = Director(
            self.datastore,
            self._scheduler_for,
            admission,
            DirectorConfig(base_models=dict(self.config.base_models)),
            flow_control=self.flow_control,
        )
        self.source = ManifestSource(paths, self.datastore, on_reload=self._reloaded)
        self.static = StaticSource(self.datastore, self.endpoints)
        self.scraper = Scraper(self.datastore, self.config.scrape)
        self.prober = HealthProber(self.datastore, self.scraper.readiness)
        # KV-cache events for precise prefix scoring; None unless the profile has a plugin that reads them
        self.kv_events = kv_event_subscriber(
            self.datastore, self._scheduler_for, load_scheduler(self.config.profile)
        )
        self.manifests: ManifestSet | None = None
        self.gateway: GatewayServer | None = None

    def _scheduler_for(self, pool: str) -> Scheduler:
        # One scheduler per pool: stateful plugins (prefix index, round-robin) must not mix pools.
        scheduler = self._schedulers.get(pool)
        if scheduler is None:
            scheduler = self._schedulers[pool] = load_scheduler(self.config.profile)
        return scheduler

    def _reloaded(self, manifests: ManifestSet) -> None:
        self.manifests = manifests
        if self.gateway is None:
            return
        listeners, routes = gateway_objects(manifests)
        if {(lis.gateway, lis.name, lis.port) for lis in listeners} != {
            (lis.gateway, lis.name, lis.port) for lis in self.gateway.listeners
        }:
            log.warning("Gateway listeners changed in the manifests; restart to bind the new ones")
        self.gateway.proxy.table = RouteTable(self.gateway.listeners, routes)
        self.gateway.proxy.guards = GuardSet(manifests.guard_policies)

    async def start(self) -> None:
        """Load the manifests (ManifestLoadFailed if they have errors), then bind every listener."""
        self.manifests = await self.source.start()
        self.static.start()
        await self.scraper.start()
        await self.prober.start()
        if self.kv_events is not None:
            await self.kv_events.start()
        try:
            listeners, routes = gateway_objects(self.manifests)
            self.gateway = GatewayServer(
                self.datastore,
                self.director,
                listeners,
                routes,
                self.config.serve,
                services=service_addresses(self.endpoints),
                access_log=AccessLog(enabled=self.config.access_log),
            )
            if self.flow_control is not None:
                self.gateway.metrics.watch_flow_control(self.flow_control)
            self.gateway.proxy.guards = GuardSet(self.manifests.guard_policies)
            self.gateway.proxy.on_connect_error = lambda e: self.scraper.readiness.set_scrape(e, False)
            await self.gateway.start()
        except BaseException:
            await self._stop_background()
            raise

    async def stop(self, drain: bool = True) -> None:
        if self.gateway is not None:
            await self.gateway.stop(drain=drain)
        await self._stop_background()

    async def _stop_background(self) -> None:
        if self.flow_control is not None:
            self.flow_control.close()  # after the drain: whatever still waits gets its 503 now
        await self.source.stop()
        await self.prober.stop()
        await self.scraper.stop()
        if self.kv_events is not None:
            await self.kv_events.stop()
        self.static.stop()

    def ready(self) -> bool:
        return self.gateway is not None and self.gateway.ready()
