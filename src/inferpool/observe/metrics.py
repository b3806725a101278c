"""The gateway's own Prometheus metrics, under the upstream Inference Extension names.

Existing dashboards for the Kubernetes Gateway API Inference Extension read
`inference_model_*`, `inference_pool_*` and `inference_extension_*` series; keeping those
names, labels and buckets means they work unchanged. Every instance owns its registry, so
two gateways in one process (tests) never share counters.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import prometheus_client.metrics
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from inferpool.admission.flowcontrol import FlowController, FlowOutcome
from inferpool.records import PrefillLeg, RequestRecord
from inferpool.state import Datastore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30,
    45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600,
)  # fmt: skip
_REQUEST_SIZE_BUCKETS = tuple(float(2**i) for i in range(6, 31))  # 64 B .. 1 GiB
_RESPONSE_SIZE_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536)
_INPUT_TOKEN_BUCKETS = (
    1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536, 131072, 262144,
    524288, 1048576,
)  # fmt: skip
_OUTPUT_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
_TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
_NTPOT_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_SCHEDULER_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
_QUEUE_WAIT_BUCKETS = (
    0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0,
    120.0, 300.0,
)  # fmt: skip

_MT = ("model_name", "target_model_name")


def prefill_outcome(leg: PrefillLeg) -> str:
    """ok; fallback (it failed and the decoder prefilled locally); error (the request ended with it)."""
    if leg.fell_back:
        return "fallback"
    return "error" if leg.error is not None else "ok"


def merge_expositions(texts: Sequence[str]) -> bytes:
    """Several processes' Prometheus text as one (`inferpool epp --workers N`): counters, histograms
    and per-request gauges add up; the pool gauges, which every worker computes from the same
    scrapes, are taken from the first text that has them."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for index, text in enumerate(texts):
        for family in text_string_to_metric_families(text):
            first = families.setdefault(family.name, family)
            merged = values.setdefault(family.name, {})
            summed = not family.name.startswith("inference_pool_")
            if not summed and first is not family and merged:
                continue  # pool gauges: the first worker's view
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if summed and index and key in merged:
                    previous = merged[key]
                    # `_created` is a timestamp: the oldest stands for the sum
                    merged[key] = (
                        min(previous, sample.value)
                        if sample.name.endswith("_created")
                        else previous + sample.value
                    )
                else:
                    merged[key] = sample.value
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_MergedCollector(families, values))
    return generate_latest(registry)


class _MergedCollector(Collector):
    def __init__(
        self,
        families: dict[str, Metric],
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]],
    ) -> None:
        self._families, self._values = families, values

    def collect(self) -> Iterator[Metric]:
        for name, family in self._families.items():
            out = Metric(name, family.documentation, family.type, family.unit)
            for (sample_name, labels), value in self._values[name].items():
                out.add_sample(sample_name, dict(labels), value)
            yield out

    def describe(self) -> Iterator[Metric]:
        return iter(())


# ---------------------------------------------------------------- lock-free families
#
# prometheus_client's Counter, Gauge and Histogram take a lock on every update and walk the
# buckets in Python: ≈2 µs per histogram observation, and a request makes eight. Every update
# here comes from the process's one event loop thread, so its families keep plain floats, find
# a bucket by bisection, and turn into samples only when scraped. The exposition is the same
# text prometheus_client writes (series order, `_total`, `le` labels, `_created`).

_CREATED = bool(getattr(prometheus_client.metrics, "_use_created", True))


class _CounterChild:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def samples(self, metric: Metric, name: str, labels: dict[str, str]) -> None:
        metric.add_sample(name + "_total", labels, self.value)
        if _CREATED:
            metric.add_sample(name + "_created", labels, self.created)


class _GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def samples(self, metric: Metric, name: str, labels: dict[str, str]) -> None:
        metric.add_sample(name, labels, self.value)


class _HistogramChild:
    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds  # ascending, +Inf last
        self.counts = [0.0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        # the first bucket whose bound is >= amount: Prometheus buckets are `le` (inclusive)
        self.counts[bisect_left(self.bounds, amount)] += 1.0
        self.sum += amount

    def samples(self, metric: Metric, name: str, labels: dict[str, str]) -> None:
        total = 0.0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            total += count
            metric.add_sample(name + "_bucket", {**labels, "le": floatToGoString(bound)}, total)
        metric.add_sample(name + "_count", labels, total)
        metric.add_sample(name + "_sum", labels, self.sum)
        if _CREATED:
            metric.add_sample(name + "_created", labels, self.created)


_C = TypeVar("_C", _CounterChild, _GaugeChild, _HistogramChild)


class _LoopFamily(Collector, Generic[_C]):
    """One metric family (counter, gauge or histogram) by label values, read when scraped."""

    def __init__(
        self,
        kind: str,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        registry: CollectorRegistry,
        make: Callable[[], _C],
    ) -> None:
        self.kind, self.name, self.documentation = kind, name, documentation
        self.labelnames = tuple(labelnames)
        self._make: Callable[[], _C] = make
        self._children: dict[tuple[str, ...], _C] = {}
        registry.register(self)

    def labels(self, *values: str) -> _C:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            child = self._children[values] = self._make()
        return child

    def collect(self) -> Iterator[Metric]:
        metric = Metric(self.name, self.documentation, self.kind)
        for values, child in list(self._children.items()):
            child.samples(metric, self.name, dict(zip(self.labelnames, values, strict=True)))
        yield metric

    def describe(self) -> Iterator[Metric]:
        yield Metric(self.name, self.documentation, self.kind)


def _counter(
    name: str, doc: str, labels: Sequence[str], registry: CollectorRegistry
) -> _LoopFamily[_CounterChild]:
    return _LoopFamily("counter", name, doc, labels, registry, _CounterChild)


def _gauge(
    name: str, doc: str, labels: Sequence[str], registry: CollectorRegistry
) -> _LoopFamily[_GaugeChild]:
    return _LoopFamily("gauge", name, doc, labels, registry, _GaugeChild)


def _histogram(
    name: str, doc: str, labels: Sequence[str], buckets: Sequence[float], registry: CollectorRegistry
) -> _LoopFamily[_HistogramChild]:
    bounds = (*(float(b) for b in buckets), float("inf"))
    return _LoopFamily("histogram", name, doc, labels, registry, lambda: _HistogramChild(bounds))


_SERIES_CACHE = 4096


@dataclass(frozen=True, slots=True)
class _ModelSeries:
    requests: _CounterChild
    request_sizes: _HistogramChild
    duration: _HistogramChild
    response_sizes: _HistogramChild
    input_tokens: _HistogramChild
    output_tokens: _HistogramChild
    ntpot: _HistogramChild
    ttft: _HistogramChild
    running: _GaugeChild


class _PoolCollector(Collector):
    """Pool gauges computed from the datastore at scrape time, so they are never stale."""

    def __init__(self, datastore: Datastore) -> None:
        self._datastore = datastore

    def collect(self) -> Iterator[GaugeMetricFamily]:
        kv = GaugeMetricFamily(
            "inference_pool_average_kv_cache_utilization",
            "The average kv cache utilization for an inference server pool.",
            labels=["name"],
        )
        queue = GaugeMetricFamily(
            "inference_pool_average_queue_size",
            "The average number of requests pending in the model server queue.",
            labels=["name"],
        )
        ready = GaugeMetricFamily(
            "inference_pool_ready_pods",
            "The number of ready pods in the inference server pool.",
            labels=["name"],
        )
        for pool in self._datastore.pools():
            endpoints = self._datastore.ready_endpoints(pool.key)
            n = len(endpoints)
            kv.add_metric([pool.name], sum(e.metrics.kv_cache_usage for e in endpoints) / n if n else 0.0)
            queue.add_metric(
                [pool.name], sum(e.metrics.waiting_queue_size for e in endpoints) / n if n else 0.0
            )
            ready.add_metric([pool.name], float(n))
        yield kv
        yield queue
        yield ready

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


def _pool_name(key: str) -> str:
    """The `name` of a pool key "namespace/name" (the label the inference_pool_* series use)."""
    return key.rsplit("/", 1)[-1]


class _CountsCollector(Collector):
    """A counter family read at scrape time from counts a component keeps as plain ints."""

    def __init__(self, name: str, documentation: str, label: str, counts: Callable[[], Mapping[str, int]]):
        self._name, self._doc, self._label, self._counts = name, documentation, label, counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._doc, labels=[self._label])
        for value, count in sorted(self._counts().items()):
            family.add_metric([value], float(count))
        yield family

    def describe(self) -> Iterator[CounterMetricFamily]:
        return iter(())


class _FlowControlCollector(Collector):
    """Flow control queue gauges per pool and priority band, read from the controller at scrape time."""

    def __init__(self, flow: FlowController) -> None:
        self._flow = flow

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["inference_pool", "priority"]
        size = GaugeMetricFamily(
            "inference_extension_flow_control_queue_size",
            "The current number of requests waiting in the flow control layer.",
            labels=labels,
        )
        size_bytes = GaugeMetricFamily(
            "inference_extension_flow_control_queue_bytes",
            "The current size in bytes of all requests waiting in the flow control layer.",
            labels=labels,
        )
        for stats in self._flow.stats():
            key = [_pool_name(stats.pool), str(stats.priority)]
            size.add_metric(key, float(stats.requests))
            size_bytes.add_metric(key, float(stats.bytes))
        yield size
        yield size_bytes

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class GatewayMetrics:
    """Counters and histograms for requests through this gateway, plus the pool gauges."""

    def __init__(self, datastore: Datastore | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = _counter(
            "inference_model_request",
            "Counter of inference model requests broken out for each model and target model.",
            _MT,
            r,
        )
        self.errors = _counter(
            "inference_model_request_error",
            "Counter of inference model requests errors broken out for each model and target model.",
            (*_MT, "error_code"),
            r,
        )
        self.duration = _histogram(
            "inference_model_request_duration_seconds",
            "Inference model response latency distribution in seconds for each model and target model.",
            _MT,
            _LATENCY_BUCKETS,
            r,
        )
        self.request_sizes = _histogram(
            "inference_model_request_sizes",
            "Inference model requests size distribution in bytes for each model and target model.",
            _MT,
            _REQUEST_SIZE_BUCKETS,
            r,
        )
        self.response_sizes = _histogram(
            "inference_model_response_sizes",
            "Inference model responses size distribution in bytes for each model and target model.",
            _MT,
            _RESPONSE_SIZE_BUCKETS,
            r,
        )
        self.input_tokens = _histogram(
            "inference_model_input_tokens",
            "Inference model input token count distribution for requests in each model.",
            _MT,
            _INPUT_TOKEN_BUCKETS,
            r,
        )
        self.output_tokens = _histogram(
            "inference_model_output_tokens",
            "Inference model output token count distribution for requests in each model.",
            _MT,
            _OUTPUT_TOKEN_BUCKETS,
            r,
        )
        self.running = _gauge(
            "inference_model_running_requests",
            "Inference model number of running requests in each model.",
            ("model_name",),
            r,
        )
        self.ttft = _histogram(
            "inference_model_time_to_first_token_seconds",
            "Time from request arrival to the first response byte, per model and target model.",
            _MT,
            _TTFT_BUCKETS,
            r,
        )
        self.ntpot = _histogram(
            "inference_model_normalized_time_per_output_token_seconds",
            "Inference model latency divided by number of output tokens in seconds for each model and target model.",
            _MT,
            _NTPOT_BUCKETS,
            r,
        )
        self.scheduler = _histogram(
            "inference_extension_scheduler_e2e_duration_seconds",
            "End-to-end scheduling latency distribution in seconds.",
            (),
            _SCHEDULER_BUCKETS,
            r,
        ).labels()
        # P/D disaggregation: one count per leg of each split request, and the prefill leg's time.
        # The request counters above count the request once, whichever legs it took.
        self.pd_legs = _counter(
            "inferpool_pd_legs",
            "Legs of prefill/decode-disaggregated requests, by pool, leg (prefill, decode), endpoint "
            "and outcome (ok; fallback: the prefill failed and the decoder prefilled locally; error).",
            ("inference_pool", "leg", "endpoint", "outcome"),
            r,
        )
        self.pd_prefill_duration = _histogram(
            "inferpool_pd_prefill_duration_seconds",
            "Time of the prefill leg of disaggregated requests, by pool and outcome.",
            ("inference_pool", "outcome"),
            _TTFT_BUCKETS,
            r,
        )
        self._children: dict[tuple[str, str], _ModelSeries] = {}
        if datastore is not None:
            r.register(_PoolCollector(datastore))

    def watch_flow_control(self, flow: FlowController) -> Callable[[], None]:
        """Export `flow`'s queue gauges and its wait-time histogram (by outcome); returns the unsubscribe.

        Upstream names; the labels leave out upstream's fairness_id (client-chosen, unbounded)
        and model names (a queue is per pool and priority). The histogram's `_count` series
        are the outcome counters: Dispatched, RejectedCapacity, EvictedTTL,
        EvictedContextCancelled, EvictedOther.
        """
        self.flow_wait = _histogram(
            "inference_extension_flow_control_request_queue_duration_seconds",
            "Distribution of the time requests spend in the flow control layer, by final outcome.",
            ("inference_pool", "priority", "outcome"),
            _QUEUE_WAIT_BUCKETS,
            self.registry,
        )
        self.registry.register(_FlowControlCollector(flow))
        return flow.subscribe(self.observe_flow)

    def watch_counts(
        self, name: str, documentation: str, label: str, counts: Callable[[], Mapping[str, int]]
    ) -> None:
        """Export `counts()` as counter `name` by `label`: no per-event cost, read when scraped."""
        self.registry.register(_CountsCollector(name, documentation, label, counts))

    def observe_flow(self, outcome: FlowOutcome) -> None:
        self.flow_wait.labels(_pool_name(outcome.pool), str(outcome.priority), outcome.outcome).observe(
            outcome.wait_s
        )

    def request_routed(self, model: str) -> None:
        """A request the scheduler placed: it runs until its record arrives (`observe`)."""
        if model:
            self._series(model, model).running.inc()

    def _series(self, model: str, target: str) -> _ModelSeries:
        """The labelled children of one (model, target model), looked up once, not per request."""
        key = (model, target)
        series = self._children.get(key)
        if series is None:
            if len(self._children) >= _SERIES_CACHE:
                self._children.clear()  # client-chosen names (404s) must not grow it without bound
            labels = key
            series = self._children[key] = _ModelSeries(
                requests=self.requests.labels(*labels),
                request_sizes=self.request_sizes.labels(*labels),
                duration=self.duration.labels(*labels),
                response_sizes=self.response_sizes.labels(*labels),
                input_tokens=self.input_tokens.labels(*labels),
                output_tokens=self.output_tokens.labels(*labels),
                ntpot=self.ntpot.labels(*labels),
                ttft=self.ttft.labels(*labels),
                running=self.running.labels(model),
            )
        return series

    def observe(self, record: RequestRecord, model: str | None = None) -> None:
        """One finished request that reached a pool (the caller skips the others), counted under
        `model` (observe.model_labels: the record's own name unless that would grow without bound)."""
        if model is None or model == record.model:
            model, target = record.model, record.target_model
        else:
            target = model
        series = self._series(model, target)
        if record.routed and model:
            series.running.dec()
        series.requests.inc()
        failed = record.status >= 400 or record.error is not None
        if failed:
            self.errors.labels(model, target, str(record.status)).inc()
        if record.endpoint or record.scores:  # the endpoint first: the scores' length is a call
            self.scheduler.observe(record.decision_s)
        if record.prefill is not None:
            self._observe_legs(record, record.prefill, failed)
        series.request_sizes.observe(record.request_bytes)
        if failed:
            return
        series.duration.observe(record.e2e_s)
        series.response_sizes.observe(record.response_bytes)
        if record.prompt_tokens:
            series.input_tokens.observe(record.prompt_tokens)
        output = record.completion_tokens
        if output:
            series.output_tokens.observe(output)
            if record.e2e_s > 0:
                series.ntpot.observe(record.e2e_s / output)
        if record.ttft_s is not None:
            series.ttft.observe(record.ttft_s)

    def _observe_legs(self, record: RequestRecord, prefill: PrefillLeg, failed: bool) -> None:
        pool = _pool_name(record.pool or "")
        outcome = prefill_outcome(prefill)
        self.pd_legs.labels(pool, "prefill", prefill.endpoint, outcome).inc()
        if prefill.duration_s is not None:
            self.pd_prefill_duration.labels(pool, outcome).observe(prefill.duration_s)
        if record.endpoint is not None:  # the decode leg was sent (the request may have ended before)
            self.pd_legs.labels(pool, "decode", record.endpoint, "error" if failed else "ok").inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
