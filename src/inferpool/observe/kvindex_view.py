"""The admin API's view of the precise prefix index: what each KV-event stream holds, and how
much of a given prompt each endpoint holds (`/api/kv-index`; docs/precise-prefix.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from inferpool.scheduling import Scheduler
from inferpool.scheduling.plugins.precise_prefix import PrecisePrefixCacheScorer
from inferpool.scrape.kvevents import KVEventSubscriber
from inferpool.state import Datastore


class KVIndexView:
    def __init__(
        self, subscriber: KVEventSubscriber, datastore: Datastore, scheduler_for: Callable[[str], Scheduler]
    ) -> None:
        self.subscriber = subscriber
        self.datastore = datastore
        self.scheduler_for = scheduler_for

    def streams(self) -> list[dict[str, object]]:
        """Per event stream: live or not, block size, confirmed and speculative blocks."""
        index = self.subscriber.index
        return [index.summary(source) for source in sorted(self.subscriber.streams())]

    def prompt(self, body: Mapping[str, Any]) -> list[dict[str, object]]:
        """Per endpoint of every pool scored precisely: leading blocks of this request's prompt held."""
        rows: list[dict[str, object]] = []
        for pool in self.datastore.pools():
            plugins = self.scheduler_for(pool.key).plugins()
            scorer = next((p for p in plugins if isinstance(p, PrecisePrefixCacheScorer)), None)
            if scorer is None:
                continue
            endpoints = list(self.datastore.endpoints(pool.key))
            rows.extend({"pool": pool.key, **row} for row in scorer.prompt_blocks(body, endpoints))
        return rows


class _CoreParts(Protocol):
    datastore: Datastore
    kv_events: KVEventSubscriber | None

    def scheduler_for(self, pool: str) -> Scheduler: ...


def kv_index_view(core: _CoreParts) -> KVIndexView | None:
    """The view of a core whose profile reads KV events; None otherwise (the route answers 404)."""
    if core.kv_events is None:
        return None
    return KVIndexView(core.kv_events, core.datastore, core.scheduler_for)
