from __future__ import annotations

import asyncio
import random
import time
from dataclasses import replace

import orjson
import pytest

from inferpool.admission import Admission, AdmissionConfig
from inferpool.errors import InferenceError
from inferpool.request import Director, DirectorConfig, RequestRecord, RoutedRequest
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import (
    Criticality,
    Datastore,
    Endpoint,
    EndpointMetrics,
    ModelRoute,
    Objective,
    Pool,
    PoolBinding,
    TargetModel,
)

from .fakes import FakeScheduler

POOL = "default/vllm-llama3-8b-instruct"
BASE = "meta-llama/Llama-3.1-8B-Instruct"
SSE_BODY = (
    b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
    b'data: {"choices":[{"index":0,"delta":{"content":"!"},"finish_reason":"stop"}]}\n\n'
    b'data: {"choices":[],"usage":{"prompt_tokens":12,"total_tokens":14,"completion_tokens":2,'
    b'"prompt_tokens_details":{"cached_tokens":0}}}\n\n'
    b"data: [DONE]\n\n"
)


def _endpoint(name: str, queue: int = 0, kv: float = 0.0, ready: bool = True) -> Endpoint:
    return Endpoint(
        name,
        f"10.0.0.{len(name)}" if name[-1].isalpha() else f"10.0.0.{name[-1]}",
        8000,
        POOL,
        ready=ready,
        metrics=EndpointMetrics(waiting_queue_size=queue, kv_cache_usage=kv, scraped_at=time.monotonic()),
    )


class Harness:
    def __init__(
        self,
        *endpoints: Endpoint,
        scheduler: FakeScheduler | None = None,
        config: DirectorConfig | None = None,
    ):
        self.store = Datastore()
        self.store.upsert_pool(Pool("default", "vllm-llama3-8b-instruct", {"app": "vllm"}, [8000]))
        self.store.upsert_model(
            ModelRoute(
                "default",
                "food-review",
                "food-review",
                "vllm-llama3-8b-instruct",
                Criticality.STANDARD,
                [TargetModel("food-review-1", 1)],
            )
        )
        self.store.upsert_model(
            ModelRoute("default", "base", BASE, "vllm-llama3-8b-instruct", Criticality.CRITICAL)
        )
        self.store.upsert_model(
            ModelRoute("default", "batch", "batch", "vllm-llama3-8b-instruct", Criticality.SHEDDABLE)
        )
        for endpoint in endpoints or (_endpoint("pod1"), _endpoint("pod2"), _endpoint("pod3")):
            self.store.upsert_endpoint(endpoint)
        self.scheduler = scheduler or FakeScheduler()
        self.admission = Admission(AdmissionConfig())
        self.director = Director(
            self.store, lambda pool: self.scheduler, self.admission, config, random.Random(7)
        )
        self.records: list[RequestRecord] = []
        self.director.subscribe(self.records.append)

    def route(
        self, body: dict[str, object] | bytes, path: str = "/v1/chat/completions", **headers: str
    ) -> RoutedRequest:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return self.director.route(POOL, path, {k.replace("_", "-"): v for k, v in headers.items()}, raw)

    def refused(
        self, body: dict[str, object] | bytes, path: str = "/v1/chat/completions", **headers: str
    ) -> InferenceError:
        with pytest.raises(InferenceError) as info:
            self.route(body, path, **headers)
        assert self.records[-1].status == info.value.status
        return info.value

    def loads(self) -> dict[str, tuple[int, int]]:
        return {e.name: (e.in_flight, e.in_flight_tokens) for e in self.store.endpoints(POOL)}


CHAT = {
    "model": "food-review",
    "messages": [{"role": "user", "content": "Rate this pizza " * 10}],
    "stream": True,
}


def test_route_resolves_rewrites_and_ranks() -> None:
    h = Harness()
    routed = h.route(CHAT, X_Request_Id="req-1")
    assert routed.request_id == "req-1"
    assert (routed.pool, routed.incoming_model, routed.target_model) == (POOL, "food-review", "food-review-1")
    assert (routed.priority, routed.stream) == (0, True)
    assert orjson.loads(routed.body)["model"] == "food-review-1"
    assert [e.name for e in routed.candidates] == ["pod1", "pod2", "pod3"]
    assert routed.result.profile == "fake"
    seen = h.scheduler.seen[-1]
    assert seen.target_model == "food-review-1"
    assert seen.prompt.startswith("user: Rate this pizza")
    assert seen.prompt_tokens_estimate == (len(seen.prompt) + 3) // 4
    assert seen.headers["x-request-id"] == "req-1"  # lower-cased for plugins
    assert not h.records  # nothing is recorded before finish


def test_generated_request_ids_are_unique() -> None:
    h = Harness()
    ids = {h.route(CHAT).request_id for _ in range(50)}
    assert len(ids) == 50


def test_full_streaming_lifecycle_record() -> None:
    h = Harness()
    routed = h.route(CHAT, X_Request_Id="abc", X_Gateway_Inference_Fairness_Id="tenant")
    pod = routed.candidates[0]
    routed.dispatched(pod)
    assert h.loads()[pod.name] == (1, routed.scheduling_request.prompt_tokens_estimate)
    assert h.scheduler.routed == [("abc", pod.name)]
    routed.response_started(200, "text/event-stream; charset=utf-8")
    for i in range(0, len(SSE_BODY), 7):
        routed.response_data(SSE_BODY[i : i + 7])
    record = routed.finish(200)
    assert h.loads()[pod.name] == (0, 0)
    assert h.scheduler.completed == [("abc", pod.name)]
    assert h.records == [record]
    assert (record.request_id, record.pool, record.model, record.target_model) == (
        "abc",
        POOL,
        "food-review",
        "food-review-1",
    )
    assert (record.endpoint, record.hostport, record.status, record.error) == (
        pod.name,
        pod.hostport,
        200,
        None,
    )
    assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == (12, 2, 0)
    assert record.stream and record.priority == 0 and record.attempts == 1
    assert record.ttft_s is not None and 0 <= record.ttft_s <= record.e2e_s
    assert record.decision_s >= 0 and record.started_at <= time.time()
    assert record.response_bytes == len(SSE_BODY)
    assert record.request_bytes == len(orjson.dumps(CHAT))
    assert record.profile == "fake" and len(record.scores) == 3
    assert record.scores[0].endpoint == pod.name and record.scores[0].scores == {"least-request": 1.0}
    assert record.fairness_id == "tenant" and record.shed_reason is None
    assert record.saturation == 0.0


def test_top_scores_limited_by_config() -> None:
    h = Harness(config=DirectorConfig(top_scores=1))
    routed = h.route(CHAT)
    assert len(routed.finish(200).scores) == 1


def test_non_streaming_usage() -> None:
    h = Harness()
    routed = h.route({"model": BASE, "prompt": "hello"}, "/v1/completions")
    assert routed.priority == 1
    routed.dispatched(routed.candidates[0])
    routed.response_started(200, "application/json")
    routed.response_data(b'{"choices":[{"text":"x"}],"usage":{"prompt_tokens":2,"completion_tokens":1,')
    routed.response_data(b'"total_tokens":3,"prompt_tokens_details":null}}')
    record = routed.finish(200)
    assert (record.prompt_tokens, record.completion_tokens, record.cached_tokens) == (2, 1, None)
    assert not record.stream


def test_retry_releases_previous_endpoint() -> None:
    h = Harness()
    routed = h.route(CHAT, X_Request_Id="r")
    first, second = routed.candidates[:2]
    routed.dispatched(first)
    routed.dispatched(second)  # connection to the first failed: the data plane moves on
    assert h.loads()[first.name] == (0, 0)
    assert h.loads()[second.name][0] == 1
    assert h.scheduler.routed == [("r", first.name), ("r", second.name)]
    assert h.scheduler.completed == [("r", first.name)]
    record = routed.finish(200)
    assert record.endpoint == second.name and record.attempts == 2
    assert all(load == (0, 0) for load in h.loads().values())
    assert h.scheduler.completed == [("r", first.name), ("r", second.name)]


def test_redispatch_to_same_endpoint_counts_once() -> None:
    h = Harness()
    routed = h.route(CHAT)
    pod = routed.candidates[0]
    routed.dispatched(pod)
    routed.dispatched(pod)
    assert pod.in_flight == 1
    routed.finish(502, "upstream reset")
    assert pod.in_flight == 0


@pytest.mark.parametrize(
    ("status", "error"),
    [(200, None), (502, "connection refused"), (499, "client disconnected"), (500, "boom")],
)
def test_every_exit_path_releases_once(status: int, error: str | None) -> None:
    h = Harness()
    routed = h.route(CHAT)
    routed.dispatched(routed.candidates[0])
    first = routed.finish(status, error)
    second = routed.finish(200)  # a second finish (e.g. a finally block) changes nothing
    assert second is first and (first.status, first.error) == (status, error)
    assert routed.finished
    assert all(load == (0, 0) for load in h.loads().values())
    assert len(h.records) == 1 and len(h.scheduler.completed) == 1
    with pytest.raises(RuntimeError):
        routed.dispatched(routed.candidates[0])


def test_finish_without_dispatch() -> None:
    h = Harness()
    record = h.route(CHAT).finish(499, "client went away before dispatch")
    assert record.endpoint is None and record.attempts == 0
    assert h.scheduler.completed == []


def test_scheduler_hook_failure_does_not_leak_in_flight() -> None:
    class Broken(FakeScheduler):
        def on_completed(self, request: SchedulingRequest, endpoint: Endpoint) -> None:
            raise RuntimeError("plugin bug")

    h = Harness(scheduler=Broken())
    routed = h.route(CHAT)
    routed.dispatched(routed.candidates[0])
    routed.finish(200)
    assert all(load == (0, 0) for load in h.loads().values())


def test_listener_failure_is_contained_and_unsubscribe_works() -> None:
    h = Harness()
    seen: list[RequestRecord] = []

    def broken(record: RequestRecord) -> None:
        raise ValueError("observer bug")

    h.director.subscribe(broken)
    stop = h.director.subscribe(seen.append)
    h.route(CHAT).finish(200)
    stop()
    stop()  # twice is harmless
    h.route(CHAT).finish(200)
    assert len(seen) == 1 and len(h.records) == 2


async def test_concurrent_requests_with_cancellation_return_to_zero() -> None:
    """Many asyncio requests ending by success, upstream error, retry and client cancel."""
    h = Harness()
    rng = random.Random(3)

    async def one(i: int) -> None:
        routed = h.route(CHAT)
        try:
            routed.dispatched(routed.candidates[0])
            if i % 4 == 1:
                routed.dispatched(routed.candidates[1])
            routed.response_started(200, "text/event-stream")
            for chunk in (SSE_BODY[:50], SSE_BODY[50:]):
                await asyncio.sleep(rng.random() / 1000)
                routed.response_data(chunk)
            if i % 4 == 2:
                raise ConnectionResetError("upstream died")
            if i % 4 == 3:
                await asyncio.sleep(3600)  # a client that will disconnect
            routed.finish(200)
        except ConnectionResetError as exc:
            routed.finish(502, str(exc))
        except asyncio.CancelledError:
            routed.finish(499, "client disconnected")
            raise

    tasks = [asyncio.create_task(one(i)) for i in range(200)]
    ending = [t for i, t in enumerate(tasks) if i % 4 != 3]
    await asyncio.wait_for(asyncio.gather(*ending, return_exceptions=True), 30)
    assert sum(e.in_flight for e in h.store.endpoints(POOL)) == 50
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert all(load == (0, 0) for load in h.loads().values())
    statuses = sorted(r.status for r in h.records)
    assert statuses.count(200) == 100 and statuses.count(502) == 50 and statuses.count(499) == 50


# -- refusals -------------------------------------------------------------------------


def test_bad_body_is_400_and_recorded() -> None:
    h = Harness()
    err = h.refused(b'{"messages":[]}', X_Request_Id="bad")
    assert (err.status, err.param) == (400, "model")
    record = h.records[-1]
    assert (record.request_id, record.model, record.endpoint, record.shed_reason) == ("bad", "", None, None)
    assert record.response_bytes == len(err.to_json())


def test_body_refused_for_another_field_keeps_its_model_on_the_record() -> None:
    h = Harness()
    err = h.refused(b'{"model":"food-review","prompt":"Hi","max_tokens":5.5}', "/v1/completions")
    assert (err.status, err.param) == (400, "body.max_tokens")
    assert (h.records[-1].model, h.records[-1].target_model) == ("food-review", "food-review")


def test_unknown_model_is_404() -> None:
    h = Harness()
    err = h.refused({"model": "nope", "messages": []})
    assert err.status == 404 and err.message == "The model `nope` does not exist."
    # loaded on a server but declared by no InferenceModel (the guide's cad-fabricator): say so
    pod = h.store.endpoints(POOL)[0]
    pod.metrics = replace(pod.metrics, loaded_adapters=frozenset({"cad-fabricator"}))
    err = h.refused({"model": "cad-fabricator", "messages": [{"role": "user", "content": "x"}]})
    assert err.status == 404 and err.message.startswith("The model `cad-fabricator` does not exist. ")
    assert "no InferenceModel" in err.message and str(err) == err.message


def test_unknown_path_with_model_is_routed_and_without_is_400() -> None:
    h = Harness()
    routed = h.route({"model": BASE, "input": "embed me"}, "/v1/embeddings")
    assert routed.target_model == BASE and routed.scheduling_request.prompt == "embed me"
    assert h.refused({"input": "x"}, "/v1/embeddings").status == 400


def test_no_ready_endpoint_is_503() -> None:
    h = Harness(_endpoint("pod1", ready=False))
    err = h.refused(CHAT)
    assert (err.status, err.message) == (503, f"no ready endpoints in pool {POOL}")
    assert h.records[-1].shed_reason == "no-ready-endpoints"


def test_saturated_pool_sheds_sheddable_only() -> None:
    h = Harness(_endpoint("pod1", queue=6), _endpoint("pod2", kv=0.9))
    err = h.refused({"model": "batch", "messages": []})
    assert err.status == 429 and err.headers["retry-after"] == "1"
    record = h.records[-1]
    assert (record.shed_reason, record.priority) == ("saturated-sheddable", -1)
    assert record.saturation is not None and record.saturation >= 1.0
    assert h.route({"model": "food-review", "messages": []}).priority == 0  # Standard still admitted
    assert h.route({"model": BASE, "messages": []}).priority == 1
    assert h.admission.shed_counts["saturated-sheddable"] == 1


def test_objective_header_can_make_a_request_sheddable() -> None:
    h = Harness(_endpoint("pod1", queue=6))
    h.store.upsert_objective(
        Objective("default", "best-effort", PoolBinding(("vllm-llama3-8b-instruct",)), priority=-3)
    )
    err = h.refused({"model": BASE, "messages": []}, X_Gateway_Inference_Objective="best-effort")
    assert err.status == 429 and h.records[-1].objective == "best-effort"


def test_scheduler_shed_is_429() -> None:
    h = Harness(scheduler=FakeScheduler(shed=True))
    err = h.refused(CHAT)
    assert err.status == 429
    assert h.records[-1].shed_reason == "scheduler-shed"
    assert h.records[-1].filtered_out == {"pod1": "legacy-shed", "pod2": "legacy-shed", "pod3": "legacy-shed"}


def test_everything_filtered_is_503() -> None:
    h = Harness(scheduler=FakeScheduler(drop_all=True))
    err = h.refused(CHAT)
    assert err.status == 503 and "passed the filters" in err.message


def test_scheduler_crash_is_500() -> None:
    h = Harness(scheduler=FakeScheduler(fail=True))
    err = h.refused(CHAT)
    assert err.status == 500 and "plugin exploded" in err.message


def test_subset_hint_limits_candidates() -> None:
    h = Harness()
    pod2 = h.store.endpoint(POOL, "pod2")
    assert pod2 is not None
    routed = h.director.route(
        POOL, "/v1/chat/completions", {}, orjson.dumps(CHAT), frozenset({pod2.hostport})
    )
    assert routed.candidates == [pod2]
    assert routed.scheduling_request.subset == frozenset({pod2.hostport})
    with pytest.raises(InferenceError) as info:
        h.director.route(POOL, "/v1/chat/completions", {}, orjson.dumps(CHAT), frozenset({"10.9.9.9:1"}))
    assert info.value.status == 503


# -- requests without a body ---------------------------------------------------------


def test_a_request_without_a_body_goes_to_a_random_ready_endpoint_unscheduled() -> None:
    # saturated (admission would shed a sheddable request) and a scheduler that fails if asked:
    # neither sees a request that has no model to schedule on
    h = Harness(
        _endpoint("pod1", queue=50),
        _endpoint("pod2", queue=50),
        _endpoint("pod3", ready=False),
        scheduler=FakeScheduler(fail=True),
    )
    first: set[str] = set()
    for i in range(40):
        routed = h.director.route_without_body(POOL, "/health", {"X-Request-Id": f"get-{i}"})
        assert sorted(e.name for e in routed.candidates) == ["pod1", "pod2"]  # ready ones, each once
        first.add(routed.candidates[0].name)
        routed.dispatched(routed.candidates[0])
        routed.response_started(200, "text/plain")
        record = routed.finish(200)
        assert (record.request_id, record.pool, record.model, record.status) == (f"get-{i}", POOL, "", 200)
        assert record.endpoint == routed.candidates[0].name and record.scores == ()
    assert first == {"pod1", "pod2"}  # at random: each ready endpoint took some
    assert h.loads() == {"pod1": (0, 0), "pod2": (0, 0), "pod3": (0, 0)}
    assert not any(h.admission.shed_counts.values())


def test_a_request_without_a_body_goes_where_a_plugin_says_its_path_must() -> None:
    class Pinning(FakeScheduler):
        def endpoint_for_path(self, path: str) -> str | None:
            return "pod2" if path.startswith("/v1/responses/resp_1") else None

    h = Harness(scheduler=Pinning())
    for _ in range(10):
        routed = h.director.route_without_body(POOL, "/v1/responses/resp_1?stream=true", {})
        assert routed.candidates[0].name == "pod2" and len(routed.candidates) == 3
    pod2 = h.store.endpoint(POOL, "pod2")
    assert pod2 is not None
    h.store.set_ready(pod2, False)
    assert "pod2" not in [
        e.name for e in h.director.route_without_body(POOL, "/v1/responses/resp_1", {}).candidates
    ]


def test_a_request_without_a_body_keeps_to_the_subset_and_is_503_when_none_is_ready() -> None:
    h = Harness()
    pod2 = h.store.endpoint(POOL, "pod2")
    assert pod2 is not None
    assert h.director.route_without_body(POOL, "/health", {}, frozenset({pod2.hostport})).candidates == [pod2]
    with pytest.raises(InferenceError) as info:
        h.director.route_without_body(POOL, "/health", {"x-request-id": "none"}, frozenset({"10.9.9.9:1"}))
    assert (info.value.status, info.value.message) == (503, f"no ready endpoints in pool {POOL}")
    record = h.records[-1]
    assert (record.request_id, record.pool, record.status, record.endpoint) == ("none", POOL, 503, None)


# -- models and LoRA ------------------------------------------------------------------


def test_served_models_with_configured_base() -> None:
    h = Harness(config=DirectorConfig(base_models={POOL: BASE}))
    models = {m.id: m for m in h.director.served_models(POOL)}
    assert set(models) == {"food-review", BASE, "batch"}
    assert models["food-review"].parent == BASE and models["food-review"].criticality == "Standard"
    assert models[BASE].parent is None
    assert h.director.served_models("default/other") == []


def test_served_models_carry_the_servers_entries_for_their_targets_and_the_base() -> None:
    h = Harness(config=DirectorConfig(base_models={POOL: BASE}))
    first, second = h.store.endpoints(POOL)[:2]
    first.metrics = replace(first.metrics, model_cards={BASE: {"id": BASE, "max_model_len": 512}})
    cards = {BASE: {"id": BASE, "max_model_len": 4096}, "batch": {"id": "batch", "root": "/a"}}
    second.metrics = replace(second.metrics, model_cards=cards)
    models = {m.id: m for m in h.director.served_models(POOL)}
    assert models[BASE].card == {"id": BASE, "max_model_len": 512}  # servers disagree: any one
    assert models["batch"].card == {"id": "batch", "root": "/a"}
    assert models["food-review"].card is None  # no server lists its targets


def test_base_model_inferred_from_reported_adapters() -> None:
    h = Harness()
    assert h.director.base_model(POOL) == (None, set())
    assert h.route(CHAT).scheduling_request.lora_adapter is None  # unknown before any adapter is seen
    pod = h.store.endpoint(POOL, "pod1")
    assert pod is not None
    pod.metrics = replace(pod.metrics, active_adapters=frozenset({"food-review-1", "batch"}))
    assert h.director.base_model(POOL) == (BASE, {"food-review-1", "batch"})
    assert h.route(CHAT).scheduling_request.lora_adapter is True
    assert h.route({"model": BASE, "messages": []}).scheduling_request.lora_adapter is False
    parents = {m.id: m.parent for m in h.director.served_models(POOL)}
    assert parents == {"food-review": BASE, BASE: None, "batch": BASE}


def test_the_servers_model_lists_tell_the_base_model_before_any_adapter_runs() -> None:
    """GET /v1/models names the server's own model without a parent and loaded adapters with
    one: known from the first poll, with no LoRA traffic yet (vLLM's metrics name only adapters
    with unfinished requests)."""
    h = Harness()
    for pod in h.store.endpoints(POOL):
        pod.metrics = replace(
            pod.metrics, base_models=frozenset({BASE}), loaded_adapters=frozenset({"food-review-1"})
        )
    assert h.director.base_model(POOL) == (BASE, {"food-review-1"})
    assert h.route({"model": BASE, "messages": []}).scheduling_request.lora_adapter is False
    assert h.route(CHAT).scheduling_request.lora_adapter is True  # food-review -> food-review-1
    for pod in h.store.endpoints(POOL):
        # vLLM lists every served name
        pod.metrics = replace(
            pod.metrics, base_models=frozenset({BASE, "alias"}), loaded_adapters=frozenset()
        )
    assert h.director.base_model(POOL) == (None, set())  # two names: which is "the" base is open
    assert h.route({"model": BASE, "messages": []}).scheduling_request.lora_adapter is False


SESSION_PROFILE = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins: [{type: session-affinity-scorer}, {type: queue-scorer}]
schedulingProfiles:
- name: sticky
  plugins: [{pluginRef: session-affinity-scorer, weight: 10}, {pluginRef: queue-scorer}]
"""


def test_response_headers_name_the_endpoint_that_served() -> None:
    """session-affinity-scorer's token, for the endpoint dispatched last (a retry moves it)."""
    from inferpool.scheduling.config import build_scheduler, parse_config
    from inferpool.scheduling.plugins.session_affinity import encode_token

    h = Harness(scheduler=build_scheduler(parse_config(SESSION_PROFILE)))  # type: ignore[arg-type]
    routed = h.route(CHAT)
    assert routed.response_headers() == {}  # not sent anywhere yet
    first, second = routed.candidates[0], routed.candidates[1]
    routed.dispatched(first)
    assert routed.response_headers() == {"x-session-token": encode_token(first)}
    routed.dispatched(second)
    assert routed.response_headers() == {"x-session-token": encode_token(second)}
    # the busiest (queue-scorer 0), yet the pin wins
    second.metrics = replace(second.metrics, waiting_queue_size=3)
    pinned = h.route(CHAT, x_session_token=encode_token(second))
    assert pinned.candidates[0] is second
    routed.finish(200)
    pinned.finish(200)
    plain = Harness().route(CHAT)  # a scheduler with no such plugin: nothing asked, nothing added
    plain.dispatched(plain.candidates[0])
    assert plain.response_headers() == {}


def test_whether_a_model_is_an_adapter_is_asked_of_the_pool_once_per_scrape_interval() -> None:
    """With a TTL (the core sets the scrape interval), the walk over the pool's endpoints runs
    once per (pool, model) per interval, not per request; an endpoint added or removed (the
    datastore's generation) asks again at once."""
    h = Harness(config=DirectorConfig(adapter_verdict_ttl_s=0.05))
    now = [100.0]
    h.director.clock = lambda: now[0]
    walks: list[str] = []
    walk = h.director._endpoints_say_adapter
    h.director._endpoints_say_adapter = lambda pool, model: walks.append(model) or walk(pool, model)  # type: ignore[method-assign]
    assert h.route(CHAT).scheduling_request.lora_adapter is None
    pod = h.store.endpoint(POOL, "pod1")
    assert pod is not None
    pod.metrics = replace(pod.metrics, active_adapters=frozenset({"food-review-1"}))
    assert h.route(CHAT).scheduling_request.lora_adapter is None  # as of the last look
    assert walks == ["food-review-1"]
    now[0] += 0.06
    assert h.route(CHAT).scheduling_request.lora_adapter is True
    assert walks == ["food-review-1"] * 2
    h.store.upsert_endpoint(_endpoint("pod4"))
    assert h.route(CHAT).scheduling_request.lora_adapter is True
    assert walks == ["food-review-1"] * 3  # the pool changed: asked again


def test_without_a_ttl_every_request_asks_the_pool() -> None:
    h = Harness()
    pod = h.store.endpoint(POOL, "pod1")
    assert pod is not None
    assert h.route(CHAT).scheduling_request.lora_adapter is None
    pod.metrics = replace(pod.metrics, active_adapters=frozenset({"food-review-1"}))
    assert h.route(CHAT).scheduling_request.lora_adapter is True
