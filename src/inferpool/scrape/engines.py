"""Per-engine metric maps: which Prometheus series mean "queue", "running", "KV use", ...

These are data, not code: one `EngineMap` per model-server family, read by
`inferpool.scrape.parser.parse_metrics`. The names follow the upstream model-server
protocol (gateway-api-inference-extension `docs/proposals/003-model-server-protocol`).

Aggregation rules, the same for every engine (a server may export several series of one
metric: vLLM data-parallel ranks carry `engine="0"`, `engine="1"`; a Triton server may
report per model):

* queue and running counts are **summed** over all matching series: the whole server's load;
* KV-cache use is the **mean** of the matching series (ranks of one server have equal-size
  caches, so the mean is the server's utilization), clamped to 0..1; NaN samples are ignored;
* LoRA info: among all `vllm:lora_requests_info` series (every label combination ever seen
  stays exported) the one with the **largest value** (a Unix timestamp) is current;
* block size / block count: the first series that parses as an integer.

Inside each field, a tuple of `Series` is a fallback list: the first one with any sample wins
(e.g. `vllm:kv_cache_usage_perc`, then the older `vllm:gpu_cache_usage_perc`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ENGINE_LABEL = "inference.networking.k8s.io/engine-type"
DEFAULT_ENGINE = "vllm"


@dataclass(frozen=True)
class Series:
    """One metric, optionally narrowed by label values, optionally read from a label."""

    name: str
    match: tuple[tuple[str, str], ...] = ()  # label equality filter
    label: str | None = None  # read this label's value (info-style metrics) instead of the sample

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match)


@dataclass(frozen=True)
class EngineMap:
    """Where one engine keeps the signals the scheduler needs."""

    name: str
    waiting: tuple[Series, ...]
    running: tuple[Series, ...] = ()
    kv_usage: tuple[Series, ...] = ()
    lora_info: str | None = None  # vLLM-style lora_requests_info gauge
    block_size: tuple[Series, ...] = ()
    num_blocks: tuple[Series, ...] = ()
    names: frozenset[str] = field(init=False)  # every metric name this map reads
    load_names: frozenset[str] = field(init=False)  # the queue and running series' names

    def __post_init__(self) -> None:
        specs = (*self.waiting, *self.running, *self.kv_usage, *self.block_size, *self.num_blocks)
        wanted = {s.name for s in specs}
        if self.lora_info:
            wanted.add(self.lora_info)
        object.__setattr__(self, "names", frozenset(wanted))
        object.__setattr__(self, "load_names", frozenset(s.name for s in (*self.waiting, *self.running)))


def _s(name: str, label: str | None = None, **match: str) -> Series:
    return Series(name, tuple(sorted(match.items())), label)


VLLM = EngineMap(
    name="vllm",
    waiting=(_s("vllm:num_requests_waiting"),),
    running=(_s("vllm:num_requests_running"),),
    kv_usage=(_s("vllm:kv_cache_usage_perc"), _s("vllm:gpu_cache_usage_perc")),
    lora_info="vllm:lora_requests_info",
    block_size=(_s("vllm:cache_config_info", label="block_size"),),
    num_blocks=(_s("vllm:cache_config_info", label="num_gpu_blocks"),),
)

# SGLang: newer releases put page_size/num_pages as labels of an info gauge, older ones as gauges.
SGLANG = EngineMap(
    name="sglang",
    waiting=(_s("sglang:num_queue_reqs"),),
    running=(_s("sglang:num_running_reqs"),),
    kv_usage=(_s("sglang:token_usage"),),
    block_size=(_s("sglang:cache_config_info", label="page_size"), _s("sglang:page_size")),
    num_blocks=(_s("sglang:cache_config_info", label="num_pages"), _s("sglang:num_pages")),
)

# Triton Inference Server with the TensorRT-LLM backend (inflight batcher metrics); plain
# Triton models only report `nv_inference_pending_request_count`, used as the queue fallback.
TRITON_TRTLLM = EngineMap(
    name="triton-tensorrt-llm",
    waiting=(
        _s("nv_trt_llm_request_metrics", request_type="waiting"),
        _s("nv_inference_pending_request_count"),
    ),
    running=(_s("nv_trt_llm_request_metrics", request_type="scheduled"),),
    kv_usage=(_s("nv_trt_llm_kv_cache_block_metrics", kv_cache_block_type="fraction"),),
    block_size=(_s("nv_trt_llm_kv_cache_block_metrics", kv_cache_block_type="tokens_per"),),
    num_blocks=(_s("nv_trt_llm_kv_cache_block_metrics", kv_cache_block_type="max"),),
)

# trtllm-serve's own OpenAI server.
TRTLLM_SERVE = EngineMap(
    name="trtllm-serve",
    waiting=(_s("trtllm_num_requests_waiting"),),
    running=(_s("trtllm_num_requests_running"),),
    kv_usage=(_s("trtllm_kv_cache_utilization"),),
    block_size=(_s("trtllm_kv_cache_tokens_per_block"),),
    num_blocks=(_s("trtllm_kv_cache_max_blocks"),),
)

ENGINES: Mapping[str, EngineMap] = {
    "vllm": VLLM,
    "sglang": SGLANG,
    "triton-tensorrt-llm": TRITON_TRTLLM,
    "triton": TRITON_TRTLLM,
    "tensorrt-llm": TRTLLM_SERVE,
    "trtllm": TRTLLM_SERVE,
    "trtllm-serve": TRTLLM_SERVE,
}


def engine_map(engine: str) -> EngineMap:
    """The map for `engine` (case-insensitive); ValueError names the known ones."""
    found = ENGINES.get(engine.strip().lower())
    if found is None:
        raise ValueError(f"unknown engine type {engine!r}; known: {', '.join(sorted(ENGINES))}")
    return found


def engine_of(labels: Mapping[str, str], default: str = DEFAULT_ENGINE) -> str:
    """The engine a pod declares with the `inference.networking.k8s.io/engine-type` label."""
    return labels.get(ENGINE_LABEL) or default
