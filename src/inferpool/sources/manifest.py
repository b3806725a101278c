"""The manifest source: InferencePools, InferenceModels, objectives and rewrites from YAML files, watched.

Edits take effect without a restart, as `kubectl apply` would: the files are polled for
changes (mtime, size and the set of files under each directory), reloaded, and the
Datastore is made equal to them. A bad edit is logged and the last good state stays:
a typo must never empty a running gateway. Endpoints are not this source's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Sequence

from inferpool.api.loader import ManifestSet, load_manifests, manifest_files
from inferpool.api.problems import LoadError
from inferpool.sources.convert import StateObjects, to_state
from inferpool.state import Datastore
from inferpool.state.objects import pool_key

log = logging.getLogger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


class ManifestLoadFailed(ValueError):
    """The manifests have errors; `errors` lists them in the one-line format (and str() joins
    them). A ValueError, as every other bad-input error a command reports in one message."""

    def __init__(self, errors: list[LoadError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class ManifestSource:
    """Keeps a Datastore's pools, models, objectives and rewrites equal to a set of manifest files."""

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        datastore: Datastore,
        *,
        interval_s: float = 1.0,
        on_reload: Callable[[ManifestSet], None] | None = None,
    ) -> None:
        self.paths = [str(p) for p in paths]
        self.datastore = datastore
        self.interval_s = interval_s
        self.on_reload = on_reload
        self.manifests: ManifestSet | None = None  # the last good load
        self.last_errors: list[LoadError] = []
        self.reloads = 0
        self._fingerprint: Fingerprint = ()
        self._owned: dict[str, set[str]] = {
            "pool": set(),
            "model": set(),
            "objective": set(),
            "rewrite": set(),
        }
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> ManifestSet:
        """Load once (raising ManifestLoadFailed on errors), then watch in the background."""
        self._fingerprint = self._snapshot()
        manifests = load_manifests(self.paths)
        if manifests.errors:
            raise ManifestLoadFailed(manifests.errors)
        self._apply(manifests)
        self._task = asyncio.create_task(self._watch(), name="manifest-source")
        return manifests

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- watching -----------------------------------------------------------------
    def _snapshot(self) -> Fingerprint:
        files, _ = manifest_files(self.paths)
        stamp: list[tuple[str, int, int]] = []
        for file in files:
            try:
                st = os.stat(file)
            except OSError:
                continue
            stamp.append((file, st.st_mtime_ns, st.st_size))
        return tuple(stamp)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.check()
            except Exception:  # the watcher must outlive any surprise
                log.exception("manifest reload failed")

    def check(self) -> bool:
        """Reload if any file changed since the last look; returns whether the Datastore changed."""
        fingerprint = self._snapshot()
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        manifests = load_manifests(self.paths)
        if manifests.errors:
            self.last_errors = manifests.errors
            log.error(
                "manifests have %d error(s); keeping the last good state:\n%s",
                len(manifests.errors),
                "\n".join(str(e) for e in manifests.errors),
            )
            return False
        self._apply(manifests)
        log.info("manifests reloaded (%d object(s))", manifests.documents)
        return True

    # -- applying -----------------------------------------------------------------
    def _apply(self, manifests: ManifestSet) -> None:
        state = to_state(manifests)
        self._replace(state)
        self.manifests = manifests
        self.last_errors = []
        self.reloads += 1
        for warning in manifests.warnings:
            log.warning("%s", warning)
        if self.on_reload is not None:
            self.on_reload(manifests)

    def _replace(self, state: StateObjects) -> None:
        """Upsert what changed and delete what this source added before and no longer has."""
        store = self.datastore
        current_models = {pool_key(m.namespace, m.name): m for m in store.models()}
        current_objectives = {pool_key(o.namespace, o.name): o for o in store.objectives()}
        current_rewrites = {pool_key(r.namespace, r.name): r for r in store.rewrites()}
        wanted: dict[str, set[str]] = {kind: set() for kind in self._owned}

        for pool in state.pools:
            wanted["pool"].add(pool.key)
            if store.pool(pool.key) != pool:
                store.upsert_pool(pool)
        for model in state.models:
            key = pool_key(model.namespace, model.name)
            wanted["model"].add(key)
            if current_models.get(key) != model:
                store.upsert_model(model)
        for objective in state.objectives:
            key = pool_key(objective.namespace, objective.name)
            wanted["objective"].add(key)
            if current_objectives.get(key) != objective:
                store.upsert_objective(objective)
        for rewrite in state.rewrites:
            key = pool_key(rewrite.namespace, rewrite.name)
            wanted["rewrite"].add(key)
            if current_rewrites.get(key) != rewrite:
                store.upsert_rewrite(rewrite)

        deleters = {
            "pool": store.delete_pool,
            "model": store.delete_model,
            "objective": store.delete_objective,
            "rewrite": store.delete_rewrite,
        }
        for kind, delete in deleters.items():
            for key in sorted(self._owned[kind] - wanted[kind]):
                delete(key)
        self._owned = wanted
