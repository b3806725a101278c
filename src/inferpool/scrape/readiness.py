"""The one place that decides `Endpoint.ready`.

Two signals keep an endpoint in rotation: its metrics scrapes (the scraper marks it down
after N consecutive failures) and its HealthCheckPolicy probe (the prober marks it down after
`unhealthy_threshold` failures). `ready` is their AND; each writer only flips its own
boolean here, so neither can bring an endpoint back that the other still holds down.
Share one `Readiness` between the `Scraper` and the `HealthProber` (the scraper owns one,
`scraper.readiness`; pass it to the prober).
"""

from __future__ import annotations

from dataclasses import dataclass
from weakref import WeakKeyDictionary

from inferpool.state import Datastore, Endpoint


@dataclass
class Signals:
    scrape_ok: bool = True  # optimistic: a new endpoint serves until proven otherwise
    health_ok: bool = True

    @property
    def ready(self) -> bool:
        return self.scrape_ok and self.health_ok


class Readiness:
    """Per-endpoint readiness signals; forgets endpoints the datastore dropped. `ready` is
    written through the datastore (`Datastore.set_ready`), which keeps each pool's ready list."""

    def __init__(self, datastore: Datastore) -> None:
        self._datastore = datastore
        self._signals: WeakKeyDictionary[Endpoint, Signals] = WeakKeyDictionary()

    def signals(self, endpoint: Endpoint) -> Signals:
        found = self._signals.get(endpoint)
        if found is None:
            found = self._signals[endpoint] = Signals()
        return found

    def set_scrape(self, endpoint: Endpoint, ok: bool) -> None:
        signals = self.signals(endpoint)
        signals.scrape_ok = ok
        self._datastore.set_ready(endpoint, signals.ready)

    def set_health(self, endpoint: Endpoint, ok: bool) -> None:
        signals = self.signals(endpoint)
        signals.health_ok = ok
        self._datastore.set_ready(endpoint, signals.ready)
