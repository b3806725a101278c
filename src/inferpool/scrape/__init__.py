"""Model-server metric collection: per-engine metric maps, fast text parsing, polling, health.

`Scraper` keeps `Endpoint.metrics` fresh, `HealthProber` (in `inferpool.scrape.health`)
runs HealthCheckPolicy probes, and `Readiness` turns both signals into `Endpoint.ready`.
"""

from inferpool.scrape.engines import ENGINE_LABEL, ENGINES, EngineMap, Series, engine_map, engine_of
from inferpool.scrape.parser import Sample, find_series, metrics_from_series, parse_metrics
from inferpool.scrape.readiness import Readiness
from inferpool.scrape.scraper import ScrapeConfig, Scraper

__all__ = [
    "ENGINES",
    "ENGINE_LABEL",
    "EngineMap",
    "Readiness",
    "Sample",
    "ScrapeConfig",
    "Scraper",
    "Series",
    "engine_map",
    "engine_of",
    "find_series",
    "metrics_from_series",
    "parse_metrics",
]
