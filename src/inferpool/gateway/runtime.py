"""One gateway process put together: the request core (request.core) plus the Gateway listeners.

`inferpool serve` and `inferpool up` both run a GatewayRuntime; they differ only in where
the endpoints come from (an endpoints file vs. simulated replicas the caller started).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from inferpool.admission import AdmissionConfig
from inferpool.api import ManifestSet
from inferpool.gateway.config import ServeConfig
from inferpool.gateway.manifests import listeners_of, route_of
from inferpool.gateway.routing import HTTPRoute, Listener, RouteTable, TLSConfig
from inferpool.gateway.server import GatewayServer
from inferpool.observe.accesslog import AccessLog
from inferpool.request.core import Core, CoreConfig
from inferpool.scrape import ScrapeConfig
from inferpool.sources.static import StaticEndpoint
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
    fleet_speed: float = 1.0  # a simulated fleet's --speed: wall-clock intervals scale by 1/speed


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
    """The core (with health probes) plus the listeners of the manifests' Gateways; start() then stop().

    Pools, models, objectives, rewrites, HTTPRoutes and GuardPolicies follow edits of the
    manifest files; listeners are bound once (changing a Gateway needs a restart).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        config: RuntimeConfig | None = None,
        endpoints: Iterable[StaticEndpoint] = (),
    ) -> None:
        self.config = config = config or RuntimeConfig()
        self.endpoints = list(endpoints)
        self.core = Core(
            CoreConfig(
                scheduler=config.profile,
                admission=config.admission,
                scrape=config.scrape,
                health_probes=True,
                manifests=list(paths),
                endpoints=self.endpoints,
                static_source=True,
                base_models=config.base_models,
                fleet_speed=config.fleet_speed,
            )
        )
        self.core.on_manifests(self._reloaded)
        self.gateway: GatewayServer | None = None

    @property
    def datastore(self) -> Datastore:
        return self.core.datastore

    @property
    def manifests(self) -> ManifestSet | None:
        return self.core.manifests

    def _reloaded(self, manifests: ManifestSet) -> None:
        if self.gateway is None:
            return
        listeners, routes = gateway_objects(manifests)
        if {(lis.gateway, lis.name, lis.port) for lis in listeners} != {
            (lis.gateway, lis.name, lis.port) for lis in self.gateway.listeners
        }:
            log.warning("Gateway listeners changed in the manifests; restart to bind the new ones")
        self.gateway.proxy.table = RouteTable(self.gateway.listeners, routes)
        self.gateway.proxy.guards = self.core.guards

    async def start(self) -> None:
        """Start the core (ManifestLoadFailed if the manifests have errors), then bind every listener."""
        await self.core.start()
        manifests = self.core.manifests
        assert manifests is not None
        try:
            listeners, routes = gateway_objects(manifests)
            self.gateway = GatewayServer(
                self.core,
                listeners,
                routes,
                self.config.serve,
                services=service_addresses(self.endpoints),
                access_log=AccessLog(enabled=self.config.access_log),
            )
            self.gateway.proxy.guards = self.core.guards
            await self.gateway.start()
        except BaseException:
            await self.core.stop()
            raise

    async def stop(self, drain: bool = True) -> None:
        if self.gateway is not None:
            await self.gateway.stop(drain=drain)
        await self.core.stop()  # after the drain: whatever still waits in flow control gets its 503 now

    def ready(self) -> bool:
        return self.gateway is not None and self.gateway.ready()
