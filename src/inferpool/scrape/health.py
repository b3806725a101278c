"""Probes each endpoint's HealthCheckPolicy path and feeds the verdict to `Readiness`.

Only pools with a `health_check` are probed. An endpoint starts healthy (as the scraper
does: it came from a source that already saw it running), goes down after
`unhealthy_threshold` consecutive failed probes and comes back after `healthy_threshold`
consecutive good ones. Any 2xx/3xx answer is good, as for Kubernetes HTTP probes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import aiohttp

from inferpool.scrape.follower import DatastoreFollower
from inferpool.scrape.readiness import Readiness
from inferpool.state import Datastore, Endpoint, HealthCheck

log = logging.getLogger(__name__)


@dataclass
class _Probe:
    endpoint: Endpoint
    check: HealthCheck
    task: asyncio.Task[None] | None = None
    failures: int = 0
    successes: int = 0
    healthy: bool = field(default=True)


class HealthProber(DatastoreFollower):
    """One probing task per (pool, endpoint) whose pool carries a health check."""

    def __init__(
        self,
        datastore: Datastore,
        readiness: Readiness | None = None,
        session: aiohttp.ClientSession | None = None,
        interval_scale: float = 1.0,  # wall seconds per fleet second (1 / a slowed fleet's speed)
    ) -> None:
        super().__init__(datastore, session)
        self.readiness = readiness or Readiness(datastore)
        self.interval_scale = interval_scale
        self._probes: dict[tuple[str, str], _Probe] = {}

    def _drop_tasks(self) -> list[asyncio.Task[None]]:
        tasks = [p.task for p in self._probes.values() if p.task is not None]
        self._probes.clear()
        return tasks

    def healthy(self, endpoint: Endpoint) -> bool:
        return self.readiness.signals(endpoint).health_ok

    def _reconcile(self) -> None:
        wanted: dict[tuple[str, str], tuple[Endpoint, HealthCheck]] = {}
        for pool in self.datastore.pools():
            if pool.health_check is None:
                continue
            for endpoint in self.datastore.endpoints(pool.key):
                wanted[(pool.key, endpoint.name)] = (endpoint, pool.health_check)
        for key in list(self._probes):
            probe = self._probes[key]
            if key in wanted and wanted[key] == (probe.endpoint, probe.check):
                continue
            self._probes.pop(key)
            if probe.task is not None:
                probe.task.cancel()
            if key not in wanted or wanted[key][0] is not probe.endpoint:
                self.readiness.set_health(probe.endpoint, True)  # no check any more: not held down
        for key, (endpoint, check) in wanted.items():
            if key not in self._probes:
                probe = self._probes[key] = _Probe(endpoint, check, healthy=self.healthy(endpoint))
                probe.task = asyncio.create_task(self._run(probe), name=f"health {endpoint.hostport}")

    # -- probing -------------------------------------------------------------------
    async def _run(self, probe: _Probe) -> None:
        while True:
            await self.probe_once(probe)
            await asyncio.sleep(probe.check.interval_s * self.interval_scale)

    async def probe_once(self, probe: _Probe) -> bool:
        """One probe; updates the counters and, at a threshold, readiness. True if it passed."""
        assert self._session is not None
        endpoint, check = probe.endpoint, probe.check
        host = f"[{endpoint.address}]" if ":" in endpoint.address else endpoint.address
        path = check.path if check.path.startswith("/") else "/" + check.path
        url = f"http://{host}:{check.port or endpoint.port}{path}"
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=check.timeout_s)) as resp:
                await resp.read()
                ok = 200 <= resp.status < 400
        except (aiohttp.ClientError, TimeoutError, OSError):
            ok = False
        if ok:
            probe.failures, probe.successes = 0, probe.successes + 1
            if not probe.healthy and probe.successes >= check.healthy_threshold:
                probe.healthy = True
                log.info("endpoint %s healthy again (%s)", endpoint.name, url)
                self.readiness.set_health(endpoint, True)
        else:
            probe.successes, probe.failures = 0, probe.failures + 1
            if probe.healthy and probe.failures >= check.unhealthy_threshold:
                probe.healthy = False
                log.warning(
                    "endpoint %s unhealthy: %d probes of %s failed", endpoint.name, probe.failures, url
                )
                self.readiness.set_health(endpoint, False)
        return ok
