"""One model-server endpoint and the latest metrics scraped from it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EndpointMetrics:
    """What the scraper last read from an endpoint's /metrics (engine-neutral). Frozen: a scrape
    makes a new one, so the endpoints of one scrape target can share it."""

    waiting_queue_size: int = 0
    running_requests: int = 0
    kv_cache_usage: float = 0.0  # fraction 0..1
    active_adapters: frozenset[str] = frozenset()  # vLLM running_lora_adapters
    waiting_adapters: frozenset[str] = frozenset()  # vLLM waiting_lora_adapters
    max_active_adapters: int = 0  # vLLM max_lora; 0 = LoRA off or unknown
    # Adapters the server has loaded (GET /v1/models entries with a parent); None = unknown.
    # vLLM's metrics only name adapters with unfinished requests, so an idle loaded adapter
    # is visible only here.
    loaded_adapters: frozenset[str] | None = None
    # The server's own model names (GET /v1/models entries without a parent); None = unknown.
    base_models: frozenset[str] | None = None
    # The server's GET /v1/models entries by id, as it lists them (root, parent, max_model_len,
    # permission...): the gateway's own model list carries them over; None = unknown.
    model_cards: Mapping[str, Mapping[str, Any]] | None = None
    cache_block_size: int | None = None
    cache_num_blocks: int | None = None
    scraped_at: float = 0.0  # time.monotonic() of the last successful scrape; 0 = never

    def has_adapter(self, model: str) -> bool:
        """Whether the server names `model` as one of its LoRA adapters (running, waiting or loaded)."""
        return (
            model in self.active_adapters
            or model in self.waiting_adapters
            or (self.loaded_adapters is not None and model in self.loaded_adapters)
        )

    def lists_model(self, model: str) -> bool:
        """Whether the server lists `model` as its own model (vLLM: an entry without a parent)."""
        return self.base_models is not None and model in self.base_models

    def age(self, now: float | None = None) -> float:
        if self.scraped_at == 0.0:
            return float("inf")
        return (time.monotonic() if now is None else now) - self.scraped_at


@dataclass(eq=False)
class Endpoint:
    """A model-server replica in a pool.

    `in_flight` and `in_flight_tokens` are this gateway's own counts, kept on every
    exit path by the request core; they are the only load signal that is never stale.
    """

    name: str  # pod name, or address:port for static endpoints
    address: str
    port: int
    pool: str  # pool key "namespace/name"
    labels: dict[str, str] = field(default_factory=dict)
    engine: str = "vllm"
    ready: bool = True  # health checks passing
    metrics: EndpointMetrics = field(default_factory=EndpointMetrics)
    in_flight: int = 0
    in_flight_tokens: int = 0
    consecutive_scrape_failures: int = 0

    @property
    def hostport(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"

    def __repr__(self) -> str:
        return f"Endpoint({self.name} {self.hostport} ready={self.ready})"
