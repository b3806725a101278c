"""The syncer's own Prometheus metrics, in a registry per syncer (several run in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class SyncerMetrics:
    """lora_syncer_adapter_status{adapter_name} is 1 loaded / 0 not; failures are counted per adapter."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.adapter_status = Gauge(
            "lora_syncer_adapter_status",
            "1 if the adapter is loaded on the model server, 0 if not.",
            ["adapter_name"],
            registry=self.registry,
        )
        self.failed_attempts = Counter(
            "lora_syncer_failed_attempts",
            "Load or unload attempts that failed.",
            ["adapter_name", "operation"],
            registry=self.registry,
        )
        self.reconciles = Counter(
            "lora_syncer_reconciles",
            "Reconcile passes completed against a healthy server.",
            registry=self.registry,
        )
        self.config_valid = Gauge(
            "lora_syncer_config_valid",
            "1 if the last read of the config file was valid, 0 if it was rejected (the previous one stays in force).",
            registry=self.registry,
        )
        self.server_healthy = Gauge(
            "lora_syncer_server_healthy",
            "1 if the model server answered /health on the last check.",
            registry=self.registry,
        )

    def set_status(self, adapter: str, loaded: bool) -> None:
        self.adapter_status.labels(adapter_name=adapter).set(1 if loaded else 0)

    def forget(self, adapter: str) -> None:
        """Drops the status series of an adapter that left the config."""
        try:
            self.adapter_status.remove(adapter)
        except KeyError:
            pass

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
