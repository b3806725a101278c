"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

With several EPP replicas all of them watch and serve; only the Lease holder writes
InferenceModel status, so replicas never fight over conditions. Expiry is judged by when
*this* replica last saw the Lease change (not by the holder's timestamps), so clock skew
between nodes cannot make two leaders; updates carry the resourceVersion, so a lost race
is a 409 Conflict, not a second leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio import client

log = logging.getLogger(__name__)


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """`is_leader()` tells whether this replica holds the Lease right now."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str | None = None,
        *,
        lease_duration_s: float = 15.0,
        renew_deadline_s: float = 10.0,
        retry_period_s: float = 2.0,
    ) -> None:
        self.coordination = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.name = name
        self.identity = identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_duration_s = lease_duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_period_s = retry_period_s
        self.transitions = 0  # times this replica became leader
        self._renewed_at = float("-inf")  # monotonic time of our last successful acquire/renew
        self._observed: tuple[str, str | None, float] | None = None  # (resourceVersion, holder, seen at)
        self._task: asyncio.Task[None] | None = None
        self.on_elected: Callable[[], None] | None = None  # e.g. write the status a follower skipped

    def is_leader(self) -> bool:
        return time.monotonic() - self._renewed_at < self.renew_deadline_s

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"leader-{self.name}")

    async def stop(self, release: bool = True) -> None:
        """Stop renewing; a leader gives the Lease up (empty holder) so a follower takes over now."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if release and self.is_leader():
            with contextlib.suppress(Exception):
                await self._release()
        self._renewed_at = float("-inf")

    async def _release(self) -> None:
        status, lease = await self._call(self.coordination.read_namespaced_lease, self.name, self.namespace)
        if status != 200 or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        spec = {**lease["spec"], "holderIdentity": "", "renewTime": _micro_time(), "leaseDurationSeconds": 1}
        await self._call(
            self.coordination.replace_namespaced_lease, self.name, self.namespace, {**lease, "spec": spec}
        )

    async def _run(self) -> None:
        while True:
            was_leader = self.is_leader()
            try:
                if await self.try_acquire_or_renew():
                    self._renewed_at = time.monotonic()
                    if not was_leader:
                        self.transitions += 1
                        log.info("leader election: %s now holds Lease %s", self.identity, self.name)
                        if self.on_elected is not None:
                            self.on_elected()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("leader election: %s", err)
            await asyncio.sleep(self.retry_period_s)

    async def try_acquire_or_renew(self) -> bool:
        status, lease = await self._call(self.coordination.read_namespaced_lease, self.name, self.namespace)
        now = _micro_time()
        if status == 404:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": int(self.lease_duration_s),
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            }
            status, _ = await self._call(self.coordination.create_namespaced_lease, self.namespace, body)
            return status in (200, 201)
        if status != 200:
            raise RuntimeError(f"reading Lease {self.name}: HTTP {status}")
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        version = str(lease["metadata"].get("resourceVersion"))
        seen = time.monotonic()
        if self._observed is None or self._observed[0] != version:
            self._observed = (version, holder, seen)
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration_s)
        expired = seen - self._observed[2] > duration
        if holder and holder != self.identity and not expired:
            return False
        spec = dict(spec)
        if holder != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.update(
            holderIdentity=self.identity, renewTime=now, leaseDurationSeconds=int(self.lease_duration_s)
        )
        body = {**lease, "spec": spec}
        status, updated = await self._call(
            self.coordination.replace_namespaced_lease, self.name, self.namespace, body
        )
        if status == 200:
            self._observed = (
                str(updated["metadata"].get("resourceVersion")),
                self.identity,
                time.monotonic(),
            )
            return True
        return False  # 409: someone else wrote first

    @staticmethod
    async def _call(method: Any, *args: Any) -> tuple[int, dict[str, Any]]:
        response = await method(*args, _preload_content=False)
        try:
            data = await response.read()
            return response.status, (json.loads(data) if data else {})
        finally:
            response.release()
