"""InferenceModel status: `Accepted`, or `ModelNameInUse` when an older model claims the same name.

Upstream's rule: among InferenceModels of one pool with the same `spec.modelName`, the
oldest (creationTimestamp, then name) is served; the others get Accepted=False with reason
ModelNameInUse. Writes go to the status subresource as merge patches, only when the
condition would change, so our own writes (which come back as MODIFIED events) settle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from inferpool.sources.kubernetes.objects import X_GROUP, Object

log = logging.getLogger(__name__)


def _age_key(obj: Object) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("creationTimestamp") or "9999"), str(meta.get("name") or ""))


def model_conflicts(models: list[Object]) -> dict[str, str]:
    """{losing model's resource name: winning model's resource name} for duplicate modelNames."""
    by_model_name: dict[str, list[Object]] = {}
    for obj in models:
        model_name = (obj.get("spec") or {}).get("modelName")
        if model_name:
            by_model_name.setdefault(str(model_name), []).append(obj)
    losers: dict[str, str] = {}
    for claims in by_model_name.values():
        claims.sort(key=_age_key)
        winner = claims[0]["metadata"]["name"]
        for loser in claims[1:]:
            losers[loser["metadata"]["name"]] = winner
    return losers


def accepted_condition(obj: Object, conflicts: dict[str, str]) -> dict[str, Any]:
    name = obj["metadata"]["name"]
    generation = (obj.get("metadata") or {}).get("generation")
    if name in conflicts:
        condition = {
            "type": "Accepted",
            "status": "False",
            "reason": "ModelNameInUse",
            "message": f"modelName is already in use by InferenceModel {conflicts[name]}",
        }
    else:
        condition = {"type": "Accepted", "status": "True", "reason": "Accepted", "message": ""}
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def _same(current: dict[str, Any] | None, wanted: dict[str, Any]) -> bool:
    if current is None:
        return False
    return all(current.get(k) == v for k, v in wanted.items())


class ModelStatusWriter:
    """Patches InferenceModel status conditions in the background, latest wanted state per model."""

    def __init__(self, custom: Any, namespace: str) -> None:
        self.custom = custom
        self.namespace = namespace
        self.pending: dict[str, dict[str, Any]] = {}
        self.sent: dict[str, dict[str, Any]] = {}  # last condition written per model (writes in flight)
        self.written = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def update(self, models: list[Object], conflicts: dict[str, str]) -> None:
        for obj in models:
            wanted = accepted_condition(obj, conflicts)
            conditions = (obj.get("status") or {}).get("conditions") or []
            current = next((c for c in conditions if c.get("type") == "Accepted"), None)
            name = obj["metadata"]["name"]
            if _same(current, wanted) or _same(self.sent.get(name), wanted):
                continue
            self.pending[obj["metadata"]["name"]] = wanted
        if self.pending:
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._run(), name="model-status")
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                name, condition = self.pending.popitem()
                self.sent[name] = condition
                condition = {**condition, "lastTransitionTime": _now()}
                try:
                    await self.custom.patch_namespaced_custom_object_status(
                        X_GROUP,
                        "v1alpha2",
                        self.namespace,
                        "inferencemodels",
                        name,
                        {"status": {"conditions": [condition]}},
                        _content_type="application/merge-patch+json",
                    )
                    self.written += 1
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # the next event for this model retries
                    self.sent.pop(name, None)
                    log.warning("status of InferenceModel %s not written: %s", name, err)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
