"""SimConfig: everything one simulated vLLM replica needs to know."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from inferpool.sim.nixl import DEFAULT_INTERCONNECT, INTERCONNECTS

if TYPE_CHECKING:
    from inferpool.sim.kvevents import KVEventsConfig
    from inferpool.sim.nixl import KVTransferConfig


@dataclass
class SimConfig:
    """One replica, as `vllm serve MODEL --port PORT --enable-lora --lora-modules ...` would be.

    `lora_modules` entries are adapter names or "name=path"; `port=0` picks a free port.
    """

    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    served_model_name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    lora_modules: list[str] = field(default_factory=list)
    max_loras: int = 1
    max_cpu_loras: int | None = None
    profile: str = "llama-3.1-8b-h100"
    speed: float = 1.0
    seed: int = 0
    fail_rate: float = 0.0
    startup_delay_s: float = 0.0
    lora_info_semantics: str = "recent"
    enable_prompt_tokens_details: bool = True
    kv_events: KVEventsConfig | None = None  # vLLM --kv-events-config; None = no events
    kv_transfer: KVTransferConfig | None = None  # vLLM --kv-transfer-config; None = no KV connector
    kv_interconnect: str = DEFAULT_INTERCONNECT  # the modelled P/D transfer path (sim/nixl.py INTERCONNECTS)
    # vLLM --data-parallel-rank: this server is rank r of a data-parallel group, one API server
    # (and port) per rank, as llm-d deploys DP (one InferencePool targetPort per rank).
    data_parallel_rank: int = 0

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("speed must be > 0")
        if not 0.0 <= self.fail_rate <= 1.0:
            raise ValueError("fail_rate must be within [0, 1]")
        if self.lora_info_semantics not in ("recent", "legacy"):
            raise ValueError("lora_info_semantics must be 'recent' or 'legacy'")
        if self.max_loras < 1:
            raise ValueError("max_loras must be >= 1")
        if self.kv_interconnect not in INTERCONNECTS:
            raise ValueError(
                f"unknown kv interconnect {self.kv_interconnect!r}: use one of {', '.join(INTERCONNECTS)}"
            )
        if self.data_parallel_rank < 0:
            raise ValueError("data_parallel_rank must be >= 0")

    @property
    def model_name(self) -> str:
        return self.served_model_name or self.model

    def adapters(self) -> dict[str, str]:
        """Startup adapters: name -> path."""
        out = {}
        for entry in self.lora_modules:
            name, _, path = entry.partition("=")
            out[name] = path or f"/adapters/{name}"
        return out
