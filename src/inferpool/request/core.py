"""The request core, assembled once: everything between the sources of truth and a data plane.

The built-in gateway, the Envoy endpoint picker and the virtual-time bench all build a `Core`
from one `CoreConfig`. It parses the scheduler configuration once and owns the datastore,
the sources (manifests, static endpoints, Kubernetes), the scraper, the health prober (where
the plane has one), the KV-event subscriber, the per-pool schedulers, admission, flow control
and the Director, with one start/stop order. Data planes only move bytes around
`core.director`; observers attach to its records.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from inferpool.admission import Admission, AdmissionConfig
from inferpool.admission.flowcontrol import FlowControlConfig, FlowController, build_flow_controller
from inferpool.api import ManifestSet
from inferpool.api.gateway import HTTPRoute
from inferpool.api.guard import GuardPolicy, pool_routes
from inferpool.guard.attach import GuardSet
from inferpool.request.director import Director, DirectorConfig
from inferpool.scheduling import Scheduler, SchedulerSpec
from inferpool.scrape import ScrapeConfig, Scraper
from inferpool.scrape.health import HealthProber
from inferpool.scrape.kvevents import KVEventSubscriber, kv_event_subscriber
from inferpool.scrape.readiness import Readiness
from inferpool.sources.manifest import ManifestSource
from inferpool.sources.static import StaticEndpoint, StaticSource
from inferpool.state import Datastore, Endpoint

log = logging.getLogger(__name__)

ManifestListener = Callable[[ManifestSet], None]

# `--fleet-speed` of `inferpool serve` and `inferpool epp`
FLEET_SPEED_HELP = (
    "Only in front of a simulated fleet: its --speed. Scrape, poll, probe and queue intervals then run "
    "1/speed times longer on the wall clock, as they would in front of real servers."
)


@dataclass(frozen=True)
class KubernetesSettings:
    """Follow one InferencePool, its models and pods, through the Kubernetes API (`inferpool epp`)."""

    pool_name: str
    pool_namespace: str = "default"
    pool_group: str = "inference.networking.k8s.io"
    kubeconfig: str | None = None  # None: in-cluster, else ~/.kube/config or KUBECONFIG
    leader_election: bool = False  # only the Lease holder writes status
    route_namespaces: tuple[str, ...] = ()  # other namespaces whose HTTPRoutes may lead to the pool


@dataclass(frozen=True)
class CoreConfig:
    scheduler: str | Path | None = None  # built-in profile name or EndpointPickerConfig path
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    scrape: ScrapeConfig | None = field(default_factory=ScrapeConfig)  # None: nothing scrapes
    health_probes: bool = False  # HealthCheckPolicy probes (the built-in gateway; Envoy does its own)
    manifests: Sequence[str | os.PathLike[str]] = ()  # watched manifest files and directories
    endpoints: Sequence[StaticEndpoint] = ()  # static endpoints (instead of pods)
    static_source: bool = False  # assign static endpoints even when none are listed yet
    kubernetes: KubernetesSettings | None = None
    base_models: Mapping[str, str] = field(default_factory=dict)  # pool key -> base model
    top_scores: int = 3  # ranked candidates kept with their scores on each record
    # Fleet seconds per wall second: a simulated fleet's `--speed` (1 for real servers). Every
    # interval the core runs on the wall clock is divided by it (see `at_fleet_speed`).
    fleet_speed: float = 1.0


def at_fleet_speed(
    config: CoreConfig, flow_control: FlowControlConfig | None
) -> tuple[CoreConfig, FlowControlConfig | None]:
    """The configuration with every wall-clock interval stretched to the fleet's time.

    In front of a fleet slowed to `fleet_speed` (a simulator at `--speed 0.125` runs 8x slower
    than the wall clock), a 50 ms scrape interval would be 8x fresher in the fleet's time than in
    front of real servers, and a peer router that keeps its own counts gets no such help. So the
    scrape and /v1/models intervals, metric staleness, the health-probe interval, flow control's
    dispatch timer, scrape lag and queue TTL all run `1 / fleet_speed` times longer on the wall
    clock. Client-facing timeouts (HTTPRoute timeouts, connect timeouts) stay in wall time.
    """
    speed = config.fleet_speed
    if not speed > 0:
        raise ValueError(f"fleet speed must be positive, got {speed}")
    if speed == 1.0:
        return config, flow_control
    stretch = 1.0 / speed
    scrape = config.scrape
    if scrape is not None:
        scrape = replace(
            scrape,
            interval_s=scrape.interval_s * stretch,
            stale_after_s=scrape.stale_after_s * stretch,
            models_interval_s=scrape.models_interval_s * stretch,
        )
    saturation = config.admission.saturation
    admission = replace(
        config.admission, saturation=replace(saturation, stale_after_s=saturation.stale_after_s * stretch)
    )
    if flow_control is not None:
        ttl = flow_control.default_request_ttl_s
        flow_control = replace(
            flow_control,
            default_request_ttl_s=ttl * stretch if ttl is not None else None,
            recheck_interval_s=flow_control.recheck_interval_s * stretch,
            scrape_lag_s=flow_control.scrape_lag_s * stretch,
        )
    return replace(config, scrape=scrape, admission=admission), flow_control


def fleet_clock(clock: Callable[[], float], fleet_speed: float) -> Callable[[], float]:
    """`clock` read in the fleet's seconds: a TTL in fleet time then spans 1 / fleet_speed wall seconds."""
    if fleet_speed == 1.0:
        return clock
    return lambda: clock() * fleet_speed


class Core:
    """Build with a CoreConfig, `await start()`, route through `director`, `await stop()`.

    The virtual-time bench injects its datastore, clock and random source, and turns off
    everything that runs on the wall clock (no scrape config, no sources).
    """

    def __init__(
        self,
        config: CoreConfig | None = None,
        *,
        datastore: Datastore | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.spec = SchedulerSpec.load(
            (config or CoreConfig()).scheduler
        )  # the one parse; ConfigError lists problems
        self.config, flow_control = at_fleet_speed(config or CoreConfig(), self.spec.flow_control)
        config = self.config
        self.datastore = datastore if datastore is not None else Datastore()
        self._schedulers: dict[str, Scheduler] = {}
        self._spare: Scheduler | None = self.spec.build()
        self.admission = Admission(config.admission)
        self.flow_control: FlowController | None = build_flow_controller(
            flow_control, self.datastore, self.admission.detector
        )
        self.director = Director(
            self.datastore,
            self.scheduler_for,
            self.admission,
            DirectorConfig(
                top_scores=config.top_scores,
                base_models=dict(config.base_models),
                adapter_verdict_ttl_s=config.scrape.interval_s if config.scrape else 0.0,
            ),
            rng=rng,
            clock=clock,
            flow_control=self.flow_control,
        )
        self.readiness = Readiness(self.datastore)
        self.scraper = Scraper(self.datastore, config.scrape, self.readiness) if config.scrape else None
        self.prober = (
            HealthProber(self.datastore, self.readiness, interval_scale=1.0 / config.fleet_speed)
            if config.health_probes
            else None
        )
        # KV-cache events for precise prefix scoring; None unless the profile has a plugin that reads them
        # Its speculative blocks expire in the fleet's time: the core's clock times the fleet's speed.
        self.kv_events: KVEventSubscriber | None = kv_event_subscriber(
            self.datastore, self.scheduler_for, self._spare, fleet_clock(clock, config.fleet_speed)
        )
        self._manifest_listeners: list[ManifestListener] = []
        self.manifest_source = (
            ManifestSource(config.manifests, self.datastore, on_reload=self._reloaded)
            if config.manifests
            else None
        )
        self.static_source = (
            StaticSource(self.datastore, config.endpoints)
            if config.endpoints or config.static_source
            else None
        )
        # GuardPolicies (screening), the same set for both data planes; follows the manifests
        self.guards = GuardSet()
        self.kube_api: Any = None  # the Kubernetes API client, once started in Kubernetes mode
        self._kube_parts: list[Any] = []
        self.manifests: ManifestSet | None = None

    # -- schedulers ---------------------------------------------------------------
    def scheduler_for(self, pool: str) -> Scheduler:
        """The pool's scheduler: one per pool, so stateful plugins (prefix index, round-robin) never mix pools."""
        scheduler = self._schedulers.get(pool)
        if scheduler is None:
            spare, self._spare = self._spare, None
            scheduler = self._schedulers[pool] = spare if spare is not None else self.spec.build()
        return scheduler

    # -- manifests ------------------------------------------------------------------
    def on_manifests(self, listener: ManifestListener) -> None:
        """Call `listener` with every good reload of the manifest files."""
        self._manifest_listeners.append(listener)

    def _reloaded(self, manifests: ManifestSet) -> None:
        self.manifests = manifests
        self._screen_with(
            GuardSet.from_manifests(manifests), [f"{p.namespace}/{p.name}" for p in manifests.pools]
        )
        for listener in self._manifest_listeners:
            listener(manifests)

    def _screen_with(self, guards: GuardSet, pools: list[str]) -> None:
        self.guards = guards
        if guards.policies:  # a policy that reaches no pool would leave screening silently off
            line, warnings = guards.describe(pools)
            log.info("%s", line)
            for warning in warnings:
                log.warning("%s", warning)

    def _guard_policies_changed(
        self, pool: str, policies: list[GuardPolicy], routes: list[HTTPRoute]
    ) -> None:
        """Kubernetes mode: the GuardPolicies of the pool's namespace, reaching the pool through
        it, its HTTPRoutes there and their Gateways (as with manifests)."""
        self._screen_with(GuardSet(policies, pool_routes(routes)), [pool])

    # -- passive health ---------------------------------------------------------------
    def connect_failed(self, endpoint: Endpoint) -> None:
        """A data plane could not connect to `endpoint`: out of rotation until its next good scrape."""
        self.readiness.set_scrape(endpoint, False)

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Sources first (ManifestLoadFailed if the manifests have errors), then scraping and events."""
        try:
            if self.manifest_source is not None:
                await self.manifest_source.start()  # its first load calls _reloaded
            elif self.config.kubernetes is not None and not self.datastore.pools():
                await self._start_kubernetes(self.config.kubernetes)
            if self.static_source is not None:
                self.static_source.start()
            if self.scraper is not None:
                await self.scraper.start()
            if self.prober is not None:
                await self.prober.start()
            if self.kv_events is not None:
                await self.kv_events.start()
        except BaseException:
            await self.stop()
            raise

    async def _start_kubernetes(self, settings: KubernetesSettings) -> None:
        from inferpool.sources.kubernetes import KubernetesConfig, KubernetesSource
        from inferpool.sources.kubernetes.client import connect
        from inferpool.sources.kubernetes.leader import LeaderElector

        api = await connect(settings.kubeconfig)
        self.kube_api = api
        may_write: Callable[[], bool] = lambda: True  # noqa: E731
        elector: LeaderElector | None = None
        if settings.leader_election:
            elector = LeaderElector(api, settings.pool_namespace, f"{settings.pool_name}-epp-leader")
            elector.start()
            may_write = elector.is_leader
        kube = KubernetesSource(
            self.datastore,
            KubernetesConfig(
                settings.pool_name,
                settings.pool_namespace,
                settings.pool_group,
                route_namespaces=settings.route_namespaces,
            ),
            api,
            may_write_status=may_write,
            on_guard_policies=functools.partial(
                self._guard_policies_changed, f"{settings.pool_namespace}/{settings.pool_name}"
            ),
        )
        kube.owns_api = True
        if elector is not None:
            elector.on_elected = kube.refresh_status
        # stopped in reverse: the elector before kube, so it releases the Lease while the client is open
        self._kube_parts.extend([kube] if elector is None else [kube, elector])
        await kube.start()

    async def stop(self) -> None:
        """After the data plane has drained: queued requests get their 503, then everything stops."""
        if self.flow_control is not None:
            self.flow_control.close()
        if self.manifest_source is not None:
            await self.manifest_source.stop()
        for part in reversed(self._kube_parts):
            await part.stop()
        self._kube_parts.clear()
        if self.prober is not None:
            await self.prober.stop()
        if self.scraper is not None:
            await self.scraper.stop()
        if self.kv_events is not None:
            await self.kv_events.stop()
        if self.static_source is not None:
            self.static_source.stop()
