"""List-then-watch of one kind of Kubernetes object, as client-go's reflector does it.

The watch resumes from the last resourceVersion seen (an event or a BOOKMARK), so a
dropped connection loses no event; a `410 Gone` (the version was compacted away) means
the history is gone and only a fresh list can say what exists, so it relists. Any other
failure waits out an exponential backoff and tries again, keeping the version; a failure that
repeats (a kind the ServiceAccount may not list, a CRD not installed) is logged once, not once a
try, until the API server answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

log = logging.getLogger(__name__)

LIST_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)

Object = dict[str, Any]


class RawResponse(Protocol):
    """What kubernetes_asyncio returns with `_preload_content=False` (an aiohttp response)."""

    status: int

    async def read(self) -> bytes: ...

    def release(self) -> Any: ...

    def close(self) -> None: ...

    @property
    def content(self) -> Any: ...


# Called with keyword arguments of the list call (watch, resource_version, ...), returns the raw response.
ListCall = Callable[..., Awaitable[Any]]


class Gone(Exception):
    """410: the resourceVersion we asked for is older than the API server's history."""


class WatchError(Exception):
    """The API server answered with an error other than 410."""


# Why a list or watch answered this, where the cause is almost always the same
_STATUS_CAUSES = {
    403: "forbidden: the ServiceAccount's RBAC does not grant list/watch on it",
    404: "not found: its CRD is not installed",
}


def _http_error(what: str, status: int, body: bytes) -> WatchError:
    cause = _STATUS_CAUSES.get(status)
    if cause is not None:
        return WatchError(f"{what}: HTTP {status}, {cause}")
    return WatchError(f"{what}: HTTP {status}: {body[:200]!r}")


@dataclass
class Backoff:
    """Exponential delays with jitter, reset after a success."""

    base_s: float = 0.2
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay(self) -> float:
        self.failures += 1
        raw = min(self.cap_s, self.base_s * 2 ** (self.failures - 1))
        return raw * (0.5 + 0.5 * self.rng.random())

    def reset(self) -> None:
        self.failures = 0


@dataclass
class ReflectorStats:
    lists: int = 0
    watches: int = 0
    events: int = 0
    gone: int = 0
    errors: int = 0


def resource_version(obj: Object) -> str | None:
    meta = obj.get("metadata") or {}
    rv = meta.get("resourceVersion")
    return str(rv) if rv else None


class Reflector:
    """Keeps `on_sync` (whole list) and `on_event` (each change) fed for one resource."""

    def __init__(
        self,
        name: str,
        call: ListCall,
        on_sync: Callable[[list[Object]], None],
        on_event: Callable[[str, Object], None],
        *,
        backoff: Backoff | None = None,
        watch_timeout_s: int = 300,
    ) -> None:
        self.name = name
        self.call = call
        self.on_sync = on_sync
        self.on_event = on_event
        self.backoff = backoff or Backoff()
        self.watch_timeout_s = watch_timeout_s
        self.resource_version: str | None = None
        self.synced = asyncio.Event()
        self.stats = ReflectorStats()
        self._last_error: str | None = None  # the failure last logged, until a list or watch answers
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"reflector-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                await self._watch()
                self.backoff.reset()  # the server ended the watch normally (timeoutSeconds): resume
            except Gone:
                self.stats.gone += 1
                log.info(
                    "%s: resourceVersion %s expired (410 Gone), relisting", self.name, self.resource_version
                )
                self.resource_version = None
            except asyncio.CancelledError:
                raise
            except Exception as err:  # network, 5xx, bad JSON: retry without losing our place
                self.stats.errors += 1
                delay = self.backoff.next_delay()
                message = str(err) or type(err).__name__
                repeated = message == self._last_error
                self._last_error = message
                log.log(
                    logging.DEBUG if repeated else logging.WARNING,
                    "%s: %s; retrying in %.2fs%s",
                    self.name,
                    message,
                    delay,
                    "" if repeated else " (a repeat of this is logged at debug level)",
                )
                await asyncio.sleep(delay)

    async def _list(self) -> None:
        response = await self.call(_preload_content=False, _request_timeout=LIST_TIMEOUT)
        try:
            body = await response.read()
            if response.status == 410:
                raise Gone()
            if not 200 <= response.status < 300:
                raise _http_error("list", response.status, body)
            data = json.loads(body)
        finally:
            response.release()
        self.stats.lists += 1
        items: list[Object] = list(data.get("items") or [])
        self.on_sync(items)
        self.resource_version = resource_version(data)
        self.backoff.reset()
        self.synced.set()
        self._recovered("listed")

    async def _watch(self) -> None:
        response = await self.call(
            watch=True,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout_s,
            _preload_content=False,
            # The server ends the watch after timeout_seconds and sends BOOKMARKs meanwhile;
            # silence well past that means a dead connection (no FIN), so give up and resume.
            _request_timeout=aiohttp.ClientTimeout(sock_connect=10, sock_read=self.watch_timeout_s + 60),
        )
        try:
            if response.status == 410:
                raise Gone()
            if not 200 <= response.status < 300:
                raise _http_error("watch", response.status, await response.read())
            self.stats.watches += 1
            self._recovered("watching")
            while True:
                line = await response.content.readline()
                if not line:
                    return
                if line.strip():
                    self._handle(json.loads(line))
        finally:
            response.close()

    def _recovered(self, doing: str) -> None:
        """A list or watch answered: the next failure is news again."""
        if self._last_error is not None:
            log.info("%s: %s again (after %s)", self.name, doing, self._last_error)
            self._last_error = None

    def _handle(self, event: Object) -> None:
        kind = event.get("type")
        obj: Object = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Gone()
            raise WatchError(f"watch error {code}: {obj.get('reason')}: {obj.get('message')}")
        rv = resource_version(obj)
        if kind == "BOOKMARK":
            self.resource_version = rv or self.resource_version
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            raise WatchError(f"unknown watch event type {kind!r}")
        self.stats.events += 1
        self.on_event(kind, obj)
        if rv:
            self.resource_version = rv
        self.backoff.reset()
