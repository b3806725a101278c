"""The config reduced to what the reconcile loop acts on: which adapters, from where, on which base."""

from __future__ import annotations

from dataclasses import dataclass

from inferpool.api.lora_config import LoRAAdapter, LoRAAdapterConfig


@dataclass(frozen=True)
class AdapterSpec:
    name: str
    source: str
    base_model: str | None


@dataclass(frozen=True)
class DesiredState:
    host: str
    port: int
    ensure_exist: tuple[AdapterSpec, ...]
    ensure_not_exist: tuple[AdapterSpec, ...]


def desired_state(config: LoRAAdapterConfig) -> DesiredState:
    """Resolves each adapter's base model (its own `base-model`, else `defaultBaseModel`)."""

    def specs(models: list[LoRAAdapter]) -> tuple[AdapterSpec, ...]:
        return tuple(AdapterSpec(a.id, a.source, config.base_model_of(a)) for a in models)

    return DesiredState(
        host=config.host,
        port=int(config.port),
        ensure_exist=specs(config.ensure_exist.models),
        ensure_not_exist=specs(config.ensure_not_exist.models),
    )
