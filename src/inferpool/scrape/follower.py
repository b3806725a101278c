"""A set of polling tasks that follows the datastore: the lifecycle the scraper and prober share.

Change events schedule one coalesced `_reconcile()` on the loop; the subclass decides there
which tasks should run. `stop()` cancels them all and closes the HTTP session it made.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Self

import aiohttp

from inferpool.state import ChangeEvent, Datastore


class DatastoreFollower:
    def __init__(self, datastore: Datastore, session: aiohttp.ClientSession | None = None) -> None:
        self.datastore = datastore
        self._session = session
        self._own_session = session is None
        self._unsubscribe: Callable[[], None] | None = None
        self._reconcile_pending = False
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- for subclasses --------------------------------------------------------------
    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    def _reconcile(self) -> None:
        """Start and cancel tasks to match the datastore (called on the loop)."""
        raise NotImplementedError

    def _drop_tasks(self) -> list[asyncio.Task[None]]:
        """Forget every task; return them for cancelling."""
        raise NotImplementedError

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        if self._running:
            return
        if self._session is None:
            self._session = self._new_session()
        self._running = True
        self._loop = asyncio.get_running_loop()
        self._unsubscribe = self.datastore.subscribe(self._on_change)
        self._reconciled()

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self._loop = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = self._drop_tasks()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- following the datastore -----------------------------------------------------
    def _on_change(self, event: ChangeEvent) -> None:
        if event.kind not in ("endpoint", "pool") or self._reconcile_pending or self._loop is None:
            return
        self._reconcile_pending = True
        self._loop.call_soon_threadsafe(self._reconciled)  # mutations belong on the loop; be safe anyway

    def _reconciled(self) -> None:
        self._reconcile_pending = False
        if self._running:
            self._reconcile()
