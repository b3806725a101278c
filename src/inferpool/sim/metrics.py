"""vLLM's /metrics page for one replica: same families, labels, buckets and HELP text as vLLM 0.32.

A per-replica prometheus_client registry (the library vLLM itself uses), fed by engine hooks, so
the text format (`_created` series, label order, every bucket) matches the recorded pages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    Summary,
    generate_latest,
)

from inferpool.sim.engine import Engine, SimRequest, StepReport

CONTENT_TYPE = CONTENT_TYPE_LATEST
_L = ("engine", "model_name")
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0)  # fmt: skip
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                   240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
ITERATION_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
HTTP_HIGHR_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5,
                      5.0, 7.5, 10.0, 30.0, 60.0)  # fmt: skip
FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")


def one_two_five(limit: int) -> list[float]:
    """vLLM's 1-2-5 buckets up to max_model_len."""
    out: list[float] = []
    scale = 1
    while True:
        for m in (1, 2, 5):
            if m * scale > limit:
                return out
            out.append(float(m * scale))
        scale *= 10


NIXL_TIME_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 5.0)
NIXL_BYTES_BUCKETS = tuple(float(2 ** (10 + i)) for i in range(1, 25, 2))  # 2 KiB to 8 GiB
NIXL_DESCRIPTOR_BUCKETS = (10, 20, 30, 50, 75, 100, 200, 400, 1000, 2000, 4000, 10000, 20000, 50000)


class NixlMetrics:
    """vLLM's NixlPromMetrics (kv_connector/v1/nixl/stats.py): names, HELP text, buckets, as 0.32 has them.

    Transfers are observed on the replica that reads (the decoder); expired leases on the one
    that held the blocks (the prefill server), as in vLLM.
    """

    def __init__(self, registry: CollectorRegistry, labelvalues: tuple[str, str]) -> None:
        r = registry

        def hist(name: str, doc: str, buckets: tuple[float, ...]) -> Any:
            return Histogram(name, doc, _L, buckets=buckets, registry=r).labels(*labelvalues)

        def counter(name: str, doc: str) -> Any:
            return Counter(name, doc, _L, registry=r).labels(*labelvalues)

        self.xfer_time = hist("vllm:nixl_xfer_time_seconds",
                              "Histogram of transfer duration for NIXL KV Cache transfers.", NIXL_TIME_BUCKETS[1:])  # fmt: skip
        self.post_time = hist("vllm:nixl_post_time_seconds",
                              "Histogram of transfer post time for NIXL KV Cache transfers.", NIXL_TIME_BUCKETS)  # fmt: skip
        self.bytes_transferred = hist("vllm:nixl_bytes_transferred",
                                      "Histogram of bytes transferred per NIXL KV Cache transfers.",
                                      NIXL_BYTES_BUCKETS)  # fmt: skip
        self.num_descriptors = hist("vllm:nixl_num_descriptors",
                                    "Histogram of number of descriptors per NIXL  KV Cache transfers.",
                                    tuple(float(b) for b in NIXL_DESCRIPTOR_BUCKETS))  # fmt: skip
        self.failed_transfers = counter(
            "vllm:nixl_num_failed_transfers",
            "Number of failed NIXL KV Cache transfers, including handshake and notification failures. NOTE: KV "
            "expiry is tracked separately in vllm:nixl_num_kv_expired_reqs.",
        )
        self.failed_notifications = counter(
            "vllm:nixl_num_failed_notifications",
            "Number of failed NIXL KV Cache notifications. Retained for compatibility; these failures are also "
            "included in vllm:nixl_num_failed_transfers.",
        )
        self.kv_expired_reqs = counter(
            "vllm:nixl_num_kv_expired_reqs",
            "Number of requests that had their KV expire. NOTE: This metric is tracked on the P instance.",
        )
        self.notifications_after_expiry = counter(
            "vllm:nixl_num_notifications_after_expiry",
            "Number of completion notifications for requests that were no longer tracked, usually because their "
            "KV lease expired. The KV blocks may have been reused before the transfer finished. Counted per "
            "notification (one per remote rank), not per request.",
        )

    def observe_transfer(self, xfer_s: float, post_s: float, num_bytes: int, num_descriptors: int) -> None:
        self.xfer_time.observe(xfer_s)
        self.post_time.observe(post_s)
        self.bytes_transferred.observe(num_bytes)
        self.num_descriptors.observe(num_descriptors)

    def failed_notification(self) -> None:
        """vLLM counts a failed notification in both counters."""
        self.failed_notifications.inc()
        self.failed_transfers.inc()


@dataclass(frozen=True)
class MetricsConfig:
    model_name: str
    max_loras: int
    lora_info_semantics: str = "recent"  # or "legacy"
    # vLLM labels per-engine series engine="<data-parallel rank>": an API server of rank r
    # (`--data-parallel-rank r`, one port per rank) reports engine="r".
    engine_index: int = 0


class SimMetrics:
    """Owns one replica's registry; engine hooks observe, `render()` refreshes gauges and serialises."""

    def __init__(self, engine: Engine, config: MetricsConfig, wall_clock: Callable[[], float] = time.time):
        self.engine = engine
        self.config = config
        self.wall_clock = wall_clock
        r = self.registry = CollectorRegistry(auto_describe=False)
        GCCollector(registry=r)
        PlatformCollector(registry=r)
        ProcessCollector(registry=r)
        lv = (str(config.engine_index), config.model_name)
        max_len = engine.profile.max_model_len
        tok_buckets = one_two_five(max_len)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, _L, registry=r)

        def hist(name: str, doc: str, buckets: tuple[float, ...] | list[float]) -> Histogram:
            return Histogram(name, doc, _L, buckets=buckets, registry=r)

        est = "(for Model Flops Utilization calculations)."
        for what in ("flops", "read_bytes", "write_bytes"):
            verb = {"flops": "floating point operations", "read_bytes": "bytes read from memory",
                    "write_bytes": "bytes written to memory"}[what]  # fmt: skip
            counter(f"vllm:estimated_{what}_per_gpu", f"Estimated number of {verb} per GPU {est}").labels(*lv)
        self.running = Gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
                             _L, registry=r).labels(*lv)  # fmt: skip
        self.waiting = Gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
                             _L, registry=r).labels(*lv)  # fmt: skip
        by_reason = Gauge(
            "vllm:num_requests_waiting_by_reason",
            "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; "
            "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). "
            "Sum of all reasons equals vllm:num_requests_waiting.",
            (*_L, "reason"),
            registry=r,
        )
        self.waiting_capacity = by_reason.labels(*lv, "capacity")
        self.waiting_deferred = by_reason.labels(*lv, "deferred")
        sleep = Gauge(
            "vllm:engine_sleep_state",
            "Engine sleep state; awake = 0 means engine is sleeping; awake = 1 means engine is awake; "
            "weights_offloaded = 1 means sleep level 1; discard_all = 1 means sleep level 2.",
            (*_L, "sleep_state"),
            registry=r,
        )
        sleep.labels(*lv, "awake").set(1)
        sleep.labels(*lv, "weights_offloaded").set(0)
        sleep.labels(*lv, "discard_all").set(0)
        self.kv_usage = Gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", _L,
                              registry=r).labels(*lv)  # fmt: skip
        self.gpu_cache_usage = Gauge("vllm:gpu_cache_usage_perc",
                                     "GPU KV-cache usage. 1 means 100 percent usage (deprecated name).",
                                     _L, registry=r).labels(*lv)  # fmt: skip
        self.prefix_queries = counter(
            "vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens."
        ).labels(*lv)
        self.prefix_hits = counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens."
        ).labels(*lv)
        ext = "from KV connector cross-instance cache sharing, in terms of number of"
        self.external_queries = counter(
            "vllm:external_prefix_cache_queries", f"External prefix cache queries {ext} queried tokens."
        ).labels(*lv)
        self.external_hits = counter(
            "vllm:external_prefix_cache_hits", f"External prefix cache hits {ext} cached tokens."
        ).labels(*lv)
        counter(
            "vllm:mm_cache_queries", "Multi-modal cache queries, in terms of number of queried items."
        ).labels(*lv)
        counter("vllm:mm_cache_hits", "Multi-modal cache hits, in terms of number of cached items.").labels(
            *lv
        )
        self.preemptions = counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine."
        ).labels(*lv)
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.").labels(*lv)
        by_source = Counter("vllm:prompt_tokens_by_source", "Number of prompt tokens by source.",
                            (*_L, "source"), registry=r)  # fmt: skip
        self.prompt_computed = by_source.labels(*lv, "local_compute")
        self.prompt_cache_hit = by_source.labels(*lv, "local_cache_hit")
        self.prompt_external = by_source.labels(*lv, "external_kv_transfer")
        self.prompt_cached = counter(
            "vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external)."
        ).labels(*lv)
        cached_src = Counter(
            "vllm:prompt_tokens_cached_by_source",
            "Prefix-cache hit tokens by the cache tier that supplied them: device (local HBM), host (offloaded "
            "to DRAM), disk, p2p (transferred from another vLLM instance) or external_unspecified. Counted at "
            "admission; sums to vllm:prefix_cache_hits + vllm:external_prefix_cache_hits.",
            (*_L, "source"),
            registry=r,
        )
        self.cached_device = cached_src.labels(*lv, "device")
        self.cached_p2p = cached_src.labels(*lv, "p2p")  # NixlConnector's cache hit source
        for src in ("host", "disk", "external_unspecified"):
            cached_src.labels(*lv, src)
        self.generation_tokens = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        ).labels(*lv)
        success = Counter("vllm:request_success", "Count of successfully processed requests.",
                          ("engine", "finished_reason", "model_name"), registry=r)  # fmt: skip
        self.success = {reason: success.labels(lv[0], reason, config.model_name) for reason in FINISH_REASONS}
        rejections = Counter("vllm:admission_rejections",
                             "Number of admission attempts rejected by a queue limit, by reason.",
                             ("model_name", "reason"), registry=r)  # fmt: skip
        rejections.labels(config.model_name, "max_num_queued_reqs")
        rejections.labels(config.model_name, "max_num_queued_tokens")
        self.h_prompt = hist(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", tok_buckets
        ).labels(*lv)
        self.h_generation = hist("vllm:request_generation_tokens", "Number of generation tokens processed.",
                                 tok_buckets).labels(*lv)  # fmt: skip
        self.h_iteration = hist("vllm:iteration_tokens_total", "Histogram of number of tokens per engine_step.",
                                ITERATION_BUCKETS).labels(*lv)  # fmt: skip
        self.h_max_gen = hist(
            "vllm:request_max_num_generation_tokens",
            "Histogram of maximum number of requested generation tokens.",
            tok_buckets,
        ).labels(*lv)
        self.h_n = hist("vllm:request_params_n", "Histogram of the n request parameter.",
                        (1, 2, 5, 10, 20)).labels(*lv)  # fmt: skip
        self.h_max_tokens = hist("vllm:request_params_max_tokens", "Histogram of the max_tokens request parameter.",
                                 tok_buckets).labels(*lv)  # fmt: skip
        self.h_ttft = hist("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                           TTFT_BUCKETS).labels(*lv)  # fmt: skip
        self.h_itl = hist("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                          ITL_BUCKETS).labels(*lv)  # fmt: skip
        self.h_tpot = hist(
            "vllm:request_time_per_output_token_seconds",
            "Histogram of time_per_output_token_seconds per request.",
            ITL_BUCKETS,
        ).labels(*lv)
        self.h_e2e = hist("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                          LATENCY_BUCKETS).labels(*lv)  # fmt: skip
        self.h_queue = hist(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            LATENCY_BUCKETS,
        ).labels(*lv)
        self.h_inference = hist(
            "vllm:request_inference_time_seconds",
            "Histogram of time spent in RUNNING phase for request.",
            LATENCY_BUCKETS,
        ).labels(*lv)
        self.h_prefill = hist(
            "vllm:request_prefill_time_seconds",
            "Histogram of time spent in PREFILL phase for request.",
            LATENCY_BUCKETS,
        ).labels(*lv)
        self.h_decode = hist(
            "vllm:request_decode_time_seconds",
            "Histogram of time spent in DECODE phase for request.",
            LATENCY_BUCKETS,
        ).labels(*lv)
        self.h_preempt = hist("vllm:request_num_preemptions",
                              "Histogram of the number of times a request was preempted.",
                              (1, 2, 3, 4, 5, 10, 20)).labels(*lv)  # fmt: skip
        self.h_prefill_kv = hist("vllm:request_prefill_kv_computed_tokens",
                                 "Histogram of new KV tokens computed during prefill (excluding cached tokens).",
                                 tok_buckets).labels(*lv)  # fmt: skip
        self.lora_info = Gauge(
            "vllm:lora_requests_info",
            "Running stats on lora requests.",
            ("max_lora", "running_lora_adapters", "waiting_lora_adapters"),
            registry=r,
        )
        cache_labels = cache_config_labels(engine, config.engine_index)
        Gauge("vllm:cache_config_info", "Information of the LLMEngine CacheConfig", tuple(cache_labels),
              registry=r).labels(**cache_labels).set(1)  # fmt: skip
        self.http_requests = Counter("http_requests_total",
                                     "Total number of requests by method, status and handler.",
                                     ("handler", "method", "status"), registry=r)  # fmt: skip
        note = "Only value of header is respected. Otherwise ignored. No percentile calculated. "
        self.http_req_size = Summary("http_request_size_bytes",
                                     f"Content length of incoming requests by handler. {note}", ("handler",),
                                     registry=r)  # fmt: skip
        self.http_resp_size = Summary("http_response_size_bytes",
                                      f"Content length of outgoing responses by handler. {note}", ("handler",),
                                      registry=r)  # fmt: skip
        self.http_highr = Histogram(
            "http_request_duration_highr_seconds",
            "Latency with many buckets but no API specific labels. Made for more "
            "accurate percentile calculations. ",
            buckets=HTTP_HIGHR_BUCKETS,
            registry=r,
        )
        self.http_duration = Histogram("http_request_duration_seconds",
                                       "Latency with only few buckets by handler. Made to be only used if "
                                       "aggregation by handler is important. ", ("handler", "method"),
                                       buckets=(0.1, 0.5, 1.0), registry=r)  # fmt: skip
        self.nixl: NixlMetrics | None = None
        engine.step_hooks.append(self._on_step)
        engine.finish_hooks.append(self._on_finish)
        engine.admit_hooks.append(self._on_admit)

    # ----- hooks --------------------------------------------------------------------------------

    def enable_nixl(self) -> NixlMetrics:
        """The replica runs the NixlConnector: vLLM registers the nixl_* families then."""
        if self.nixl is None:
            self.nixl = NixlMetrics(self.registry, ("0", self.config.model_name))
        return self.nixl

    def _on_admit(self, req: SimRequest, num_cached: int) -> None:
        """Local hits are prefix-cache hits; KV pulled from a prefill server is an external (p2p) hit."""
        external = req.num_external_tokens
        self.prefix_queries.inc(req.num_tokens)
        self.prefix_hits.inc(num_cached)
        if self.nixl is not None and req.num_tokens != num_cached:
            self.external_queries.inc(req.num_tokens - num_cached)
            self.external_hits.inc(external)
        if req.num_admissions == 1:  # once per request: not again after a preemption or a failed pull
            self.prompt_tokens.inc(req.num_prompt_tokens)
            self.prompt_computed.inc(req.num_prompt_tokens - num_cached - external)
            self.prompt_cache_hit.inc(num_cached)
            self.prompt_external.inc(external)
            self.prompt_cached.inc(num_cached + external)
            self.cached_device.inc(num_cached)
            self.cached_p2p.inc(external)

    def _on_step(self, report: StepReport) -> None:
        self.h_iteration.observe(report.num_tokens)
        self.generation_tokens.inc(report.new_tokens)
        if report.num_preempted:
            self.preemptions.inc(report.num_preempted)
        for itl in report.itls:
            self.h_itl.observe(itl)
        self.update_lora_info()

    def _on_finish(self, req: SimRequest) -> None:
        reason = req.finish_reason or "abort"
        self.success[reason if reason in self.success else "abort"].inc()
        if reason in ("abort", "error"):
            return
        n_out = len(req.output_token_ids)
        end = req.finish_time or 0.0
        first_sched = req.first_scheduled_time or req.arrival_time
        first_tok = req.first_token_time or end
        self.h_prompt.observe(req.num_prompt_tokens)
        self.h_generation.observe(n_out)
        self.h_max_gen.observe(req.max_tokens)
        self.h_n.observe(1)
        self.h_max_tokens.observe(req.max_tokens)
        self.h_ttft.observe(first_tok - req.arrival_time)
        if n_out > 1:
            self.h_tpot.observe((end - first_tok) / (n_out - 1))
        self.h_e2e.observe(end - req.arrival_time)
        self.h_queue.observe(first_sched - req.arrival_time)
        self.h_inference.observe(end - first_sched)
        self.h_prefill.observe(first_tok - first_sched)
        self.h_decode.observe(end - first_tok)
        self.h_preempt.observe(req.num_preemptions)
        self.h_prefill_kv.observe(req.num_prompt_tokens - max(0, req.num_cached_tokens))

    def update_lora_info(self) -> None:
        """Stamp the current adapter label combination with the wall time, like vLLM's stat logger."""
        running, waiting = self.lora_lists()
        self.lora_info.labels(str(self.config.max_loras), running, waiting).set(self.wall_clock())

    def lora_lists(self) -> tuple[str, str]:
        if self.config.lora_info_semantics == "legacy":
            running = ",".join(dict.fromkeys(r.lora for r in self.engine.running if r.lora))
            waiting = ",".join(dict.fromkeys(r.lora for r in self.engine.waiting if r.lora))
            return running, waiting
        tracked = ",".join(self.engine.tracked_loras)
        return tracked, tracked

    def observe_http(self, handler: str, method: str, status: int, seconds: float, req_size: int,
                     resp_size: int) -> None:  # fmt: skip
        self.http_requests.labels(handler, method, f"{status // 100}xx").inc()
        self.http_req_size.labels(handler).observe(req_size)
        self.http_resp_size.labels(handler).observe(resp_size)
        self.http_highr.observe(seconds)
        self.http_duration.labels(handler, method).observe(seconds)

    def render(self, names: Sequence[str] = ()) -> bytes:
        """The page; with `names`, only those series (as prometheus_client's app serves `name[]`)."""
        engine = self.engine
        deferred = engine.num_deferred()
        self.running.set(engine.num_running)
        self.waiting.set(engine.num_waiting)
        self.waiting_deferred.set(deferred)
        self.waiting_capacity.set(engine.num_waiting - deferred)
        usage = engine.pool.usage()
        self.kv_usage.set(usage)
        self.gpu_cache_usage.set(usage)
        if names:
            return generate_latest(self.registry.restricted_registry(names))
        return generate_latest(self.registry)


def cache_config_labels(engine: Engine, engine_index: int = 0) -> dict[str, str]:
    """vllm:cache_config_info labels in vLLM's order, values as Python reprs."""
    p = engine.profile
    tokens = p.num_gpu_blocks * p.block_size
    return {
        "_block_size_resolved": "True",
        "block_size": str(p.block_size),
        "cache_dtype": "auto",
        "cache_hit_alignment_tokens": "None",
        "effective_attention_block_size": str(p.block_size),
        "enable_mamba_shared_prefix_checkpoint": "False",
        "enable_prefix_caching": "True",
        "engine": str(engine_index),
        "gpu_memory_utilization": str(p.gpu_memory_utilization),
        "hash_block_size": "None",
        "is_attention_free": "False",
        "kv_cache_dtype_skip_layers": "[]",
        "kv_cache_layout": "None",
        "kv_cache_max_concurrency": str(round(tokens / p.max_model_len, 2)),
        "kv_cache_memory_bytes": str(tokens * p.kv.bytes_per_token),
        "kv_cache_size_tokens": str(tokens),
        "kv_offloading_backend": "native",
        "kv_offloading_size": "None",
        "kv_sharing_fast_prefill": "False",
        "mamba_block_size": "None",
        "mamba_cache_dtype": "auto",
        "mamba_cache_mode": "none",
        "mamba_page_size_padded": "None",
        "mamba_ssm_cache_dtype": "float32",
        "num_cpu_blocks": "None",
        "num_gpu_blocks": str(p.num_gpu_blocks),
        "num_gpu_blocks_override": "None",
        "prefix_cache_retention_interval": "0",
        "prefix_caching_hash_algo": "sha256",
        "prefix_match_unit": "None",
        "replayssm_buffer_len": "16",
        "skip_page_size_padded": "None",
        "sliding_window": "None",
        "swa_bounded_replay": "True",
        "use_kda_recoverssm": "False",
        "use_replayssm": "False",
        "user_specified_block_size": "False",
    }
