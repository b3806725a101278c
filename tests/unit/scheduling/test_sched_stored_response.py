"""stored-response-filter: a /v1/responses follow-up goes where its predecessor was stored."""

from __future__ import annotations

from inferpool.records import RequestRecord
from inferpool.scheduling import load_scheduler
from inferpool.scheduling.plugins.stored_response import StoredResponseFilter, StoredResponseParams
from inferpool.scheduling.types import SchedulingRequest

from .conftest import ep, req


def responses_req(previous: str | None = None, **fields: object) -> SchedulingRequest:
    body: dict[str, object] = {"model": "m", "input": "hi", **fields}
    if previous is not None:
        body["previous_response_id"] = previous
    return req("hi", body=body)


def answered(
    flt: StoredResponseFilter, request: SchedulingRequest, endpoint_name: str, rid: str | None
) -> None:
    record = RequestRecord(
        request_id=request.request_id, pool="default/p", model="m", target_model="m", status=200,
        started_at=0.0, e2e_s=0.1, routed=True, endpoint=endpoint_name, response_id=rid,
    )  # fmt: skip
    flt.on_finished(request, ep(endpoint_name), record)


def test_a_follow_up_keeps_only_the_endpoint_that_stored_its_predecessor() -> None:
    flt = StoredResponseFilter()
    a, b, c = ep("vllm-0"), ep("vllm-1"), ep("vllm-2")
    first = responses_req()
    assert flt.filter(first, [a, b, c]) == [a, b, c]  # nothing named: nothing to keep to
    answered(flt, first, "vllm-1", "resp_1")
    assert flt.filter(responses_req("resp_1"), [a, b, c]) == [b]
    # the chain: the follow-up's own answer is remembered where it was made
    second = responses_req("resp_1")
    answered(flt, second, "vllm-1", "resp_2")
    assert flt.filter(responses_req("resp_2"), [a, c, b]) == [b]


def test_unknown_ids_and_absent_endpoints_leave_the_candidates_alone() -> None:
    flt = StoredResponseFilter()
    a, b = ep("vllm-0"), ep("vllm-1")
    answered(flt, responses_req(), "vllm-2", "resp_gone")
    assert flt.filter(responses_req("resp_never_seen"), [a, b]) == [a, b]
    assert flt.filter(responses_req("resp_gone"), [a, b]) == [a, b]  # its server is no candidate
    assert flt.filter(req("hi", body={"model": "m", "previous_response_id": 7}), [a, b]) == [a, b]


def test_answers_not_stored_are_not_remembered() -> None:
    flt = StoredResponseFilter()
    no_store = responses_req(store=False)
    assert not flt.needs_answer(no_store)
    answered(flt, no_store, "vllm-1", "resp_x")
    chat = req("hi", body={"model": "m", "messages": []})
    assert not flt.needs_answer(chat)
    answered(flt, chat, "vllm-1", "resp_y")
    assert flt.remembered() == 0
    assert flt.needs_answer(responses_req())
    answered(flt, responses_req(), "vllm-1", None)  # an answer without an id (an error)
    assert flt.remembered() == 0


def test_memory_is_bounded_least_recently_used_first_and_follows_the_pool() -> None:
    flt = StoredResponseFilter(StoredResponseParams(max_responses=2))
    a, b = ep("vllm-0"), ep("vllm-1")
    answered(flt, responses_req(), "vllm-0", "resp_1")
    answered(flt, responses_req(), "vllm-1", "resp_2")
    assert flt.filter(responses_req("resp_1"), [a, b]) == [a]  # used: now the most recent
    answered(flt, responses_req(), "vllm-1", "resp_3")  # evicts resp_2, the least recently used
    assert flt.filter(responses_req("resp_2"), [a, b]) == [a, b]
    assert flt.filter(responses_req("resp_1"), [a, b]) == [a]
    flt.on_endpoint_removed("vllm-0")
    assert flt.filter(responses_req("resp_1"), [a, b]) == [a, b]
    assert flt.filter(responses_req("resp_3"), [a, b]) == [b]


def test_the_default_profile_routes_a_chain_to_one_endpoint_and_asks_for_its_answers() -> None:
    scheduler = load_scheduler()  # the built-in default
    endpoints = [ep("vllm-0"), ep("vllm-1", queue=5), ep("vllm-2")]
    first = responses_req()
    assert scheduler.needs_answer(first)
    assert not scheduler.needs_answer(req("hi", body={"model": "m", "prompt": "hi"}))
    answered_record = RequestRecord(
        request_id=first.request_id, pool="default/p", model="m", target_model="m", status=200,
        started_at=0.0, e2e_s=0.1, routed=True, endpoint="vllm-1", response_id="resp_a",
    )  # fmt: skip
    scheduler.on_finished(first, endpoints[1], answered_record)
    # the busiest endpoint, chosen only because it holds the conversation
    result = scheduler.schedule(responses_req("resp_a"), endpoints)
    assert result.ranked[0].endpoint.name == "vllm-1"
    assert set(result.filtered_out) == {"vllm-0", "vllm-2"}


def test_only_responses_api_answers_must_be_read() -> None:
    """What the picker asks of Envoy before it has read the body: stored-response-filter learns
    only from Responses API answers, so the default profile reads no completion's answer; P/D
    reads every answer (its headers end the prefill leg); round-robin none."""
    default = load_scheduler()
    assert default.reads_answers("responses")
    assert not any(
        default.reads_answers(k) for k in ("completion", "chat", "embeddings", "messages", "other")
    )
    assert load_scheduler("pd").reads_answers("completion")
    assert not load_scheduler("round-robin").reads_answers("responses")


def test_an_embeddings_request_is_not_a_stored_response_though_it_has_input() -> None:
    """Embeddings bodies carry `input` too: with the API known, only Responses requests count."""
    flt = StoredResponseFilter()
    assert flt.needs_answer(req("hi", body={"model": "m", "input": "hi"}, api="responses"))
    embedding = req("hi", body={"model": "m", "input": "hi"}, api="embeddings")
    assert not flt.needs_answer(embedding)
    answered(flt, embedding, "vllm-1", "resp_9")  # even with an id on its record
    a, b = ep("vllm-0"), ep("vllm-1")
    assert flt.filter(responses_req("resp_9"), [a, b]) == [a, b]  # nothing was remembered


def test_a_stored_response_named_in_a_path_is_found_where_it_was_stored() -> None:
    # GET /v1/responses/{id} (retrieve, also streamed), its cancel and its input items: no body
    flt = StoredResponseFilter()
    answered(flt, responses_req(), "vllm-1", "resp_1")
    for path in ("/v1/responses/resp_1", "/v1/responses/resp_1?stream=true&starting_after=3",
                 "/v1/responses/resp_1/cancel", "/v1/responses/resp_1/input_items", "/v1/responses/resp_1/"):  # fmt: skip
        assert flt.endpoint_for_path(path) == "vllm-1", path
    for path in ("/v1/responses/resp_2", "/v1/responses", "/v1/responses/resp_1/other", "/health"):
        assert flt.endpoint_for_path(path) is None, path
    # through a whole scheduler built from the default profile, which has the filter
    scheduler = load_scheduler("default")
    scheduler.on_finished(responses_req(), ep("vllm-2"), _record("vllm-2", "resp_9"))
    assert scheduler.endpoint_for_path("/v1/responses/resp_9") == "vllm-2"
    assert scheduler.endpoint_for_path("/v1/models") is None


def _record(endpoint_name: str, rid: str) -> RequestRecord:
    return RequestRecord(
        request_id="r", pool="default/p", model="m", target_model="m", status=200,
        started_at=0.0, e2e_s=0.1, routed=True, endpoint=endpoint_name, response_id=rid,
    )  # fmt: skip
