"""What the scheduler is asked and what it answers; shared by the framework and its callers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inferpool.state import Endpoint


@dataclass
class SchedulingRequest:
    """The facts about one request that plugins may use."""

    request_id: str
    pool: str  # pool key "namespace/name"
    target_model: str  # model name after rewrite (what the model server will see)
    prompt: str  # prompt text, or the chat messages flattened, for prefix hashing
    priority: int = 0  # InferenceObjective priority or criticality mapped to one
    prompt_tokens_estimate: int = 0  # rough token count (len(prompt) / 4)
    max_tokens: int | None = None
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased request headers
    subset: frozenset[str] | None = None  # ext_proc subset hint: allowed "ip:port"s, None = all
    # True: target_model is a LoRA adapter; False: the base model (LoRA affinity is neutral);
    # None: unknown, scored as an adapter like upstream does.
    lora_adapter: bool | None = None
    # The decoded OpenAI body (read only), for plugins that tokenize the prompt as the engine does.
    body: Mapping[str, Any] | None = None


@dataclass
class ScoredEndpoint:
    endpoint: Endpoint
    total: float
    scores: dict[str, float]  # scorer name -> raw score 0..1 (before weighting)


@dataclass
class SchedulingResult:
    """Ranked candidates (best first) plus the reasons, for logs and the dashboard."""

    profile: str
    ranked: list[ScoredEndpoint]
    filtered_out: dict[str, str] = field(default_factory=dict)  # endpoint name -> filter that removed it
    duration_s: float = 0.0
    # A filter decided the request must be rejected now (legacy-v0.3 shedding); the caller answers 429.
    # `ranked` is then empty and `filtered_out` says why.
    shed: bool = False

    @property
    def endpoints(self) -> list[Endpoint]:
        return [s.endpoint for s in self.ranked]
