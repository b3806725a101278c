"""Keeps one vLLM server's LoRA adapters matching a vLLMLoRAConfig.

The loop reconciles at start, whenever the config file changes (ConfigMap symlink swaps
included), every `resync_interval_s`, and as soon as a failed adapter's backoff expires.
Reading /v1/models each pass is what makes a restarted replica get its adapters back: the
server forgets runtime-loaded adapters, the next pass sees them missing and loads them again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from inferpool.api.lora_config import LoRAAdapterConfig, load_lora_config
from inferpool.lora.backoff import Backoff, BackoffPolicy
from inferpool.lora.client import AdapterOpError, ServedModels, VLLMAdminClient
from inferpool.lora.desired import AdapterSpec, DesiredState, desired_state
from inferpool.lora.metrics import SyncerMetrics
from inferpool.lora.watch import FileWatcher

log = logging.getLogger("inferpool.lora")


@dataclass(frozen=True)
class SyncerOptions:
    """Timing and addressing; `base_url` overrides the config's host/port (one syncer per sim replica)."""

    base_url: str | None = None
    resync_interval_s: float = 5.0
    watch_interval_s: float = 0.5
    health_interval_s: float = 1.0
    request_timeout_s: float = 30.0
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    seed: int | None = None


@dataclass
class AdapterState:
    """What the syncer knows about one adapter named in the config."""

    spec: AdapterSpec
    want_loaded: bool
    loaded: bool = False
    last_error: str | None = None
    backoff: Backoff | None = None


class LoRASyncer:
    """Reconciles one server's adapters; run it with `async with` or `start()`/`stop()`, or await `run()`."""

    def __init__(
        self,
        config: LoRAAdapterConfig,
        *,
        config_path: Path | str | None = None,
        options: SyncerOptions | None = None,
        loader: Callable[[Path], LoRAAdapterConfig] = load_lora_config,
    ) -> None:
        self.options = options or SyncerOptions()
        self.metrics = SyncerMetrics()
        self.metrics.config_valid.set(1)
        self._config_path = Path(config_path) if config_path is not None else None
        self._loader = loader
        self._watcher = FileWatcher(self._config_path) if self._config_path is not None else None
        self._rng = random.Random(self.options.seed)
        self._desired = desired_state(config)
        self._adapters: dict[str, AdapterState] = {}
        self._apply_desired(self._desired)
        self._server_healthy = False
        self._config_error: str | None = None
        self._last_reconcile: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.options.base_url:
            return self.options.base_url.rstrip("/")
        return f"http://{self._desired.host}:{self._desired.port}"

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"lora-syncer {self.base_url}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def __aenter__(self) -> LoRASyncer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def trigger(self) -> None:
        """Asks for a reconcile now (e.g. after the caller restarted the server)."""
        self._wake.set()

    async def run(self) -> None:
        """The loop: reconcile when due, watch the file in between. Returns only when cancelled."""
        async with aiohttp.ClientSession() as session:
            self._session = session
            client = VLLMAdminClient(self.base_url, session, timeout_s=self.options.request_timeout_s)
            log.info("lora-syncer: reconciling %s", self.base_url)
            next_due = 0.0
            try:
                while True:
                    if self._reload_if_changed():
                        next_due = 0.0
                    now = time.monotonic()
                    if now >= next_due or self._wake.is_set():
                        self._wake.clear()
                        next_due = await self._pass(client)
                    sleep_s = max(0.0, min(self.options.watch_interval_s, next_due - time.monotonic()))
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=sleep_s)
                    except TimeoutError:
                        pass
            finally:
                self._session = None

    # ---- one pass ----------------------------------------------------------------------------

    async def _pass(self, client: VLLMAdminClient) -> float:
        """One reconcile attempt; returns the monotonic time the next one is due."""
        now = time.monotonic()
        if not await client.healthy():
            if self._server_healthy:
                log.warning("lora-syncer: %s is not healthy; waiting", self.base_url)
            self._set_health(False)
            for state in self._adapters.values():
                state.loaded = False
                self.metrics.set_status(state.spec.name, False)
            return now + self.options.health_interval_s
        if not self._server_healthy:
            log.info("lora-syncer: %s is healthy", self.base_url)
        self._set_health(True)
        try:
            await self.reconcile(client)
        except AdapterOpError as exc:
            log.warning("lora-syncer: listing models on %s failed: %s", self.base_url, exc)
            return time.monotonic() + self.options.health_interval_s
        due = time.monotonic() + self.options.resync_interval_s
        for state in self._adapters.values():
            if state.backoff is not None and state.backoff.failures:
                due = min(due, state.backoff.not_before)
        return due

    async def reconcile(self, client: VLLMAdminClient) -> None:
        """Loads what ensureExist lists and is missing, unloads what ensureNotExist lists and is there."""
        served = await client.models()
        for state in self._adapters.values():
            if state.want_loaded:
                await self._ensure_loaded(client, state, served)
            else:
                await self._ensure_unloaded(client, state, served)
            self.metrics.set_status(state.spec.name, state.loaded)
        self._last_reconcile = time.time()
        self.metrics.reconciles.inc()

    async def _ensure_loaded(
        self, client: VLLMAdminClient, state: AdapterState, served: ServedModels
    ) -> None:
        name = state.spec.name
        if name in served.adapters:
            state.loaded, state.last_error = True, None
            self._backoff(state).succeeded()
            return
        state.loaded = False
        backoff = self._backoff(state)
        if not backoff.ready(time.monotonic()):
            return
        try:
            await client.load(name, state.spec.source, state.spec.base_model)
        except AdapterOpError as exc:
            if exc.status == 400 and "already" in exc.message.lower():
                state.loaded, state.last_error = True, None
                backoff.succeeded()
                return
            self._failed(state, "load", exc)
            return
        log.info("lora-syncer: loaded %s from %s on %s", name, state.spec.source, self.base_url)
        state.loaded, state.last_error = True, None
        backoff.succeeded()

    async def _ensure_unloaded(
        self, client: VLLMAdminClient, state: AdapterState, served: ServedModels
    ) -> None:
        name = state.spec.name
        if name not in served.adapters:
            state.loaded, state.last_error = False, None
            self._backoff(state).succeeded()
            return
        state.loaded = True
        backoff = self._backoff(state)
        if not backoff.ready(time.monotonic()):
            return
        try:
            await client.unload(name)
        except AdapterOpError as exc:
            if exc.status != 404:  # 404: already gone, which is what we wanted
                self._failed(state, "unload", exc)
                return
        log.info("lora-syncer: unloaded %s on %s", name, self.base_url)
        state.loaded, state.last_error = False, None
        backoff.succeeded()

    def _failed(self, state: AdapterState, operation: str, exc: AdapterOpError) -> None:
        delay = self._backoff(state).failed(time.monotonic())
        state.last_error = str(exc)
        self.metrics.failed_attempts.labels(adapter_name=state.spec.name, operation=operation).inc()
        log.warning(
            "lora-syncer: %s %s on %s failed (%s); retrying in %.2fs",
            operation,
            state.spec.name,
            self.base_url,
            exc,
            delay,
        )

    def _backoff(self, state: AdapterState) -> Backoff:
        if state.backoff is None:
            state.backoff = Backoff(self.options.backoff, self._rng)
        return state.backoff

    def _set_health(self, healthy: bool) -> None:
        self._server_healthy = healthy
        self.metrics.server_healthy.set(1 if healthy else 0)

    # ---- config ------------------------------------------------------------------------------

    def _reload_if_changed(self) -> bool:
        if self._watcher is None or self._config_path is None or not self._watcher.changed():
            return False
        try:
            config = self._loader(self._config_path)
            desired = desired_state(config)
        except Exception as exc:  # any invalid file: keep the last good config in force
            self._config_error = str(exc)
            self.metrics.config_valid.set(0)
            log.error("lora-syncer: %s is invalid, keeping the previous config: %s", self._config_path, exc)
            return False
        self._config_error = None
        self.metrics.config_valid.set(1)
        log.info("lora-syncer: %s changed; reconciling", self._config_path)
        self._apply_desired(desired)
        return True

    def _apply_desired(self, desired: DesiredState) -> None:
        """Swaps in a new desired state, keeping what is known about adapters that stay."""
        self._desired = desired
        wanted = {s.name: (s, True) for s in desired.ensure_exist}
        wanted.update({s.name: (s, False) for s in desired.ensure_not_exist})
        for name in list(self._adapters):
            if name not in wanted:
                del self._adapters[name]
                self.metrics.forget(name)
        for name, (spec, want) in wanted.items():
            old = self._adapters.get(name)
            if old is not None and old.spec == spec and old.want_loaded == want:
                continue
            self._adapters[name] = AdapterState(
                spec=spec, want_loaded=want, loaded=old.loaded if old else False
            )

    # ---- reporting ---------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """True when the last pass left every adapter as the config wants it."""
        return self._server_healthy and all(s.loaded == s.want_loaded for s in self._adapters.values())

    def adapters(self) -> dict[str, AdapterState]:
        return dict(self._adapters)

    def status(self) -> dict[str, object]:
        return {
            "server": self.base_url,
            "server_healthy": self._server_healthy,
            "config_path": str(self._config_path) if self._config_path else None,
            "config_error": self._config_error,
            "last_reconcile": self._last_reconcile,
            "synced": self.synced,
            "adapters": {
                name: {
                    "want": "loaded" if s.want_loaded else "unloaded",
                    "loaded": s.loaded,
                    "source": s.spec.source,
                    "failures": s.backoff.failures if s.backoff else 0,
                    "last_error": s.last_error,
                }
                for name, s in self._adapters.items()
            },
        }
