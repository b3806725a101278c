"""Keeps every endpoint's metrics fresh: one polling task per model-server address.

A pod that belongs to two pools appears as two `Endpoint` objects with the same address;
it is scraped once and the result written to both. The task set follows the datastore:
change events schedule one (coalesced) reconcile on the loop, which starts tasks for new
addresses and cancels those of removed ones.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
from yarl import URL

from inferpool.scrape.engines import DEFAULT_ENGINE, ENGINE_LABEL, EngineMap, engine_map
from inferpool.scrape.follower import DatastoreFollower
from inferpool.scrape.parser import Sample, find_series, metrics_from_series
from inferpool.scrape.readiness import Readiness
from inferpool.state import Datastore, Endpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScrapeConfig:
    interval_s: float = 0.05  # time between the starts of two scrapes of one endpoint
    timeout_s: float = 1.0  # per scrape, connect + read
    failure_threshold: int = 3  # consecutive failures that take an endpoint out of rotation
    stale_after_s: float = 2.0  # admission treats older metrics as saturated
    metrics_path: str = "/metrics"
    metrics_port: int | None = None  # the servers' metrics port when not the one they serve on
    scheme: str = "http"  # "https": servers that serve TLS (vLLM --ssl-keyfile)
    verify_tls: bool = True  # with https: check the servers' certificates
    models_path: str = "/v1/models"  # read for loaded LoRA adapters
    models_interval_s: float = 1.0  # 0 disables; adapter loads are rare, no need to poll at 50 ms
    engine_label: str = ENGINE_LABEL
    default_engine: str = DEFAULT_ENGINE
    # The series to read where an endpoint runs the default engine, in place of its map (the EPP's
    # upstream metric flags, e.g. Triton's names in a pool whose pods declare no engine)
    default_map: EngineMap | None = None


@dataclass
class _Target:
    """One scraped address and the endpoint objects that share it."""

    address: str
    port: int
    engine: EngineMap
    endpoints: list[Endpoint] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    loaded_adapters: frozenset[str] | None = None
    base_models: frozenset[str] | None = None
    model_cards: dict[str, dict[str, Any]] | None = None
    models_read_at: float = float("-inf")
    # Whether the server answers `<metrics_path>/?name[]=...` with just the named series (None:
    # not tried yet). vLLM does (prometheus_client's app is mounted there; the plain path
    # ignores `name[]`): the page shrinks from ≈50 KB to the few series read, for the server
    # to render and for us to read. False: the whole page, every time.
    filtered: bool | None = None
    filtered_url: URL | None = None  # built once per engine map (reset when the map changes)

    @property
    def url_host(self) -> str:
        return self.host_on(self.port)

    def host_on(self, port: int) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{port}"


class Scraper(DatastoreFollower):
    """Polls `/metrics` of every endpoint in the datastore and writes `endpoint.metrics`."""

    def __init__(
        self,
        datastore: Datastore,
        config: ScrapeConfig | None = None,
        readiness: Readiness | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        super().__init__(datastore, session)
        self.config = config or ScrapeConfig()
        self._timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)  # one object, every scrape
        self.readiness = readiness or Readiness(datastore)
        self._targets: dict[tuple[str, int], _Target] = {}
        self.scrapes = 0  # successful scrapes, for tests and the dashboard
        self.failures = 0

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ssl=self.config.verify_tls)
        return aiohttp.ClientSession(connector=connector, auto_decompress=True)

    def _drop_tasks(self) -> list[asyncio.Task[None]]:
        tasks = [t.task for t in self._targets.values() if t.task is not None]
        self._targets.clear()
        return tasks

    def _engine_for(self, endpoint: Endpoint) -> EngineMap:
        name = endpoint.labels.get(self.config.engine_label) or endpoint.engine or self.config.default_engine
        try:
            found = engine_map(name)
        except ValueError:
            log.warning(
                "endpoint %s: unknown engine %r, reading it as %s",
                endpoint.name,
                name,
                self.config.default_engine,
            )
            found = engine_map(self.config.default_engine)
        if self.config.default_map is not None and found is engine_map(self.config.default_engine):
            return self.config.default_map
        return found

    def _reconcile(self) -> None:
        wanted: dict[tuple[str, int], list[Endpoint]] = {}
        for endpoint in self.datastore.all_endpoints():
            wanted.setdefault((endpoint.address, endpoint.port), []).append(endpoint)
        for key in [k for k in self._targets if k not in wanted]:
            target = self._targets.pop(key)
            if target.task is not None:
                target.task.cancel()
        for key, endpoints in wanted.items():
            engine = self._engine_for(endpoints[0])
            known = self._targets.get(key)
            if known is not None:
                if known.engine is not engine:  # other series: ask again whether it filters
                    known.filtered_url, known.filtered = None, None
                known.endpoints, known.engine = endpoints, engine
                continue
            target = self._targets[key] = _Target(key[0], key[1], engine, endpoints)
            target.task = asyncio.create_task(self._poll(target), name=f"scrape {target.url_host}")

    # -- polling -------------------------------------------------------------------
    async def _poll(self, target: _Target) -> None:
        interval = self.config.interval_s
        next_at = time.monotonic()
        while True:
            if (
                self.config.models_interval_s > 0
                and time.monotonic() - target.models_read_at >= self.config.models_interval_s
            ):
                await self._read_adapters(target)
            await self._scrape(target)
            next_at += interval
            now = time.monotonic()
            if next_at < now:  # fell behind (slow server): don't burst to catch up
                next_at = now
            await asyncio.sleep(next_at - now)

    async def _scrape(self, target: _Target) -> bool:
        """One scrape of `target`; updates its endpoints; True on success."""
        assert self._session is not None
        url = f"{self.config.scheme}://{self._metrics_host(target)}{self.config.metrics_path}"
        try:
            series = await self._filtered_series(target) if target.filtered is not False else None
            if series is None:
                async with self._session.get(url, timeout=self._timeout) as response:
                    if response.status != 200:
                        raise aiohttp.ClientResponseError(
                            response.request_info, (), status=response.status, message=response.reason or ""
                        )
                    body = await response.read()
                series = find_series(body.decode("utf-8", "replace"), target.engine.names)
            metrics = metrics_from_series(target.engine, series)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._failed(target, exc)
            return False
        except Exception as exc:  # a bug must not kill the polling task silently
            log.exception("scrape of %s failed unexpectedly", url)
            self._failed(target, exc)
            return False
        metrics = replace(
            metrics,
            scraped_at=time.monotonic(),
            loaded_adapters=target.loaded_adapters,
            base_models=target.base_models,
            model_cards=target.model_cards,
        )
        self.scrapes += 1
        for endpoint in target.endpoints:
            if endpoint.consecutive_scrape_failures >= self.config.failure_threshold:
                log.info("endpoint %s back in rotation: scrape succeeded", endpoint.name)
            # (frozen: the endpoints of one target, data-parallel ranks, share one object)
            endpoint.metrics = metrics
            endpoint.consecutive_scrape_failures = 0
            self.readiness.set_scrape(endpoint, True)
        return True

    def _metrics_host(self, target: _Target) -> str:
        port = self.config.metrics_port
        return target.url_host if port is None else target.host_on(port)

    async def _filtered_series(self, target: _Target) -> dict[str, list[Sample]] | None:
        """The series read off the filtered page, or None (then the whole page is read) once the
        server shows it does not serve one: not 200 there, or no load series in it (e.g. a
        multiprocess registry that cannot restrict). A failed connection decides nothing."""
        assert self._session is not None
        url = target.filtered_url
        if url is None:
            url = target.filtered_url = URL(
                f"{self.config.scheme}://{self._metrics_host(target)}{self.config.metrics_path.rstrip('/')}/"
            ).with_query([("name[]", name) for name in sorted(target.engine.names)])
        async with self._session.get(url, timeout=self._timeout) as response:
            body = await response.read() if response.status == 200 else None
        series = find_series(body.decode("utf-8", "replace"), target.engine.names) if body else None
        if series is None or not any(series.get(name) for name in target.engine.load_names):
            target.filtered = False
            log.info("%s: no filtered metrics page at %s; reading the whole page", target.url_host, url.path)
            return None
        target.filtered = True
        return series

    async def _read_adapters(self, target: _Target) -> None:
        """Loaded LoRA adapters (entries whose `parent` is set), the server's own model names
        (entries without one) and the entries themselves, from the OpenAI model list.

        A failure leaves the last answer in place: /metrics decides readiness, not this.
        """
        assert self._session is not None
        target.models_read_at = time.monotonic()
        url = f"{self.config.scheme}://{target.url_host}{self.config.models_path}"
        try:
            async with self._session.get(url, timeout=self._timeout) as response:
                if response.status != 200:
                    return
                listing = await response.json(content_type=None)
            entries = [e for e in (listing.get("data", []) if isinstance(listing, dict) else [])
                       if isinstance(e, dict) and "id" in e]  # fmt: skip
            target.loaded_adapters = frozenset(str(e["id"]) for e in entries if e.get("parent"))
            target.base_models = frozenset(str(e["id"]) for e in entries if not e.get("parent"))
            target.model_cards = {str(e["id"]): e for e in entries}
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return

    def _failed(self, target: _Target, exc: BaseException) -> None:
        self.failures += 1
        for endpoint in target.endpoints:
            endpoint.consecutive_scrape_failures += 1
            if endpoint.consecutive_scrape_failures == self.config.failure_threshold:
                log.warning(
                    "endpoint %s leaves rotation: %d scrapes failed (%s)",
                    endpoint.name,
                    endpoint.consecutive_scrape_failures,
                    exc.__class__.__name__,
                )
            if endpoint.consecutive_scrape_failures >= self.config.failure_threshold:
                self.readiness.set_scrape(endpoint, False)

    def is_stale(self, endpoint: Endpoint, now: float | None = None) -> bool:
        """Whether admission should treat `endpoint` as saturated for lack of fresh metrics."""
        return endpoint.metrics.age(now) > self.config.stale_after_s
