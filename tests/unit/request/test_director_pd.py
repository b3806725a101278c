"""P/D through the Director and the metrics: each leg holds its own endpoint, one request counts once."""

from __future__ import annotations

import random
import time

import orjson
from prometheus_client.parser import text_string_to_metric_families

from inferpool.admission import Admission
from inferpool.observe.decisions import DecisionLog, decision_view
from inferpool.observe.metrics import GatewayMetrics
from inferpool.records import RequestRecord
from inferpool.request import Director
from inferpool.roles import ROLE_LABEL
from inferpool.scheduling import load_scheduler
from inferpool.scheduling.plugins.prefix_cache import PrefixCacheScorer
from inferpool.state import Criticality, Datastore, Endpoint, EndpointMetrics, ModelRoute, Pool, TargetModel

POOL = "default/p"
LONG = orjson.dumps({"model": "std", "prompt": "Summarise this report. " * 200, "max_tokens": 8})


def _setup() -> tuple[Director, dict[str, Endpoint], list[RequestRecord]]:
    store = Datastore()
    store.upsert_pool(Pool("default", "p", {}, [8000]))
    store.upsert_model(ModelRoute("default", "std", "std", "p", Criticality.STANDARD, [TargetModel("m", 1)]))
    endpoints = {}
    for i, role in enumerate(("prefill", "decode")):
        metrics = EndpointMetrics(kv_cache_usage=0.1, scraped_at=time.monotonic())
        e = Endpoint(f"{role}-0", f"10.0.0.{i + 1}", 8000, POOL, metrics=metrics, labels={ROLE_LABEL: role})
        store.upsert_endpoint(e)
        endpoints[role] = e
    scheduler = load_scheduler("pd")
    director = Director(store, lambda pool: scheduler, Admission(), rng=random.Random(1))
    records: list[RequestRecord] = []
    director.subscribe(records.append)
    return director, endpoints, records


def _held(e: Endpoint) -> tuple[int, int]:
    return e.in_flight, e.in_flight_tokens


def test_each_leg_holds_its_own_endpoint_and_one_record_counts_both() -> None:
    director, eps, records = _setup()
    routed = director.route(POOL, "/v1/completions", {}, LONG)
    p, d = eps["prefill"], eps["decode"]
    assert list(routed.prefill_candidates) == [p] and list(routed.candidates) == [d]
    assert routed.pd_body is not None and routed.pd_body["model"] == "m"  # rewritten target model
    tokens = routed.scheduling_request.prompt_tokens_estimate
    routed.prefill_dispatched(p)
    assert _held(p) == (1, tokens) and _held(d) == (0, 0)
    routed.prefill_finished(200, None, 0.05)
    assert _held(p) == (0, 0)
    routed.dispatched(d)
    assert _held(d) == (1, tokens)
    record = routed.finish(200)
    assert _held(d) == (0, 0) and records == [record]
    assert (
        record.prefill is not None and record.prefill.endpoint == "prefill-0" and not record.prefill.fell_back
    )
    assert record.endpoint == "decode-0" and record.attempts == 1
    # the prefill profile's prefix index learnt the prefill leg, the decode profile's the decode leg
    scheduler = director.scheduler_for(POOL)
    prefix = next(x for x in scheduler.plugins() if isinstance(x, PrefixCacheScorer))  # type: ignore[attr-defined]
    assert prefix.index.size("prefill-0") > 0 and prefix.index.size("decode-0") > 0


def test_fallback_and_disconnects_release_every_leg() -> None:
    director, eps, _ = _setup()
    p, d = eps["prefill"], eps["decode"]
    fallback = director.route(POOL, "/v1/completions", {}, LONG)
    fallback.prefill_dispatched(p)
    fallback.prefill_finished(0, "ClientConnectorError: refused", 0.001, fell_back=True)
    fallback.dispatched(d)
    record = fallback.finish(200)
    assert record.prefill is not None and record.prefill.fell_back and _held(p) == _held(d) == (0, 0)
    # the client went away during the prefill leg: finish() releases it
    gone = director.route(
        POOL, "/v1/completions", {}, orjson.dumps({"model": "std", "prompt": "Other. " * 700})
    )
    gone.prefill_dispatched(p)
    record = gone.finish(499, "client disconnected")
    assert _held(p) == (0, 0) and record.endpoint is None
    assert record.prefill is not None and record.prefill.error == "the request ended during its prefill leg"
    # ... or during the decode leg
    late = director.route(
        POOL, "/v1/completions", {}, orjson.dumps({"model": "std", "prompt": "Third. " * 700})
    )
    late.prefill_dispatched(p)
    late.prefill_finished(200, None, 0.01)
    late.dispatched(d)
    late.finish(499, "client disconnected")
    assert _held(p) == _held(d) == (0, 0)


def test_short_prompts_and_other_apis_are_not_split() -> None:
    director, _, _ = _setup()
    routed = director.route(POOL, "/v1/completions", {}, b'{"model":"std","prompt":"hi"}')
    assert not routed.prefill_candidates and routed.pd_body is None
    chat = orjson.dumps({"model": "std", "messages": [{"role": "user", "content": "Long question. " * 300}]})
    assert director.route(POOL, "/v1/chat/completions", {}, chat).prefill_candidates
    embedding = orjson.dumps({"model": "std", "input": "Long document. " * 300})
    routed = director.route(POOL, "/v1/embeddings", {}, embedding)
    assert not routed.prefill_candidates and routed.result.prefill is None


def _samples(metrics: GatewayMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_label_each_leg_and_count_the_request_once() -> None:
    director, eps, records = _setup()
    metrics = GatewayMetrics()
    log = DecisionLog()
    for ok in (True, False):
        routed = director.route(POOL, "/v1/completions", {}, LONG)
        metrics.request_routed(routed.incoming_model)
        routed.prefill_dispatched(eps["prefill"])
        if ok:
            routed.prefill_finished(200, None, 0.02)
        else:
            routed.prefill_finished(503, "prefill answered HTTP 503", 0.01, fell_back=True)
        routed.dispatched(eps["decode"])
        record = routed.finish(200)
        metrics.observe(record)
        log.add(record)
    legs = _samples(metrics, "inferpool_pd_legs_total")
    key = lambda leg, ep, outcome: (  # noqa: E731
        ("endpoint", ep),
        ("inference_pool", "p"),
        ("leg", leg),
        ("outcome", outcome),
    )
    assert legs == {
        key("prefill", "prefill-0", "ok"): 1.0,
        key("prefill", "prefill-0", "fallback"): 1.0,
        key("decode", "decode-0", "ok"): 2.0,
    }
    requests = _samples(metrics, "inference_model_request_total")
    assert requests[(("model_name", "std"), ("target_model_name", "m"))] == 2.0
    assert sum(requests.values()) == 2.0  # two requests, four legs
    counts = _samples(metrics, "inferpool_pd_prefill_duration_seconds_count")
    assert counts == {
        (("inference_pool", "p"), ("outcome", "ok")): 1.0,
        (("inference_pool", "p"), ("outcome", "fallback")): 1.0,
    }
    view = decision_view(records[-1])
    assert view["picked"] == "decode-0" and view["prefill"]["endpoint"] == "prefill-0"
    assert view["prefill"]["fell_back"] is True and view["prefill"]["status"] == 503
    assert decision_view(records[0])["prefill"]["fell_back"] is False
    assert log.tally.routed == {("default/p", "decode-0"): 2, ("default/p", "prefill-0"): 2}
