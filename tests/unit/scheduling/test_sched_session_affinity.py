"""session-affinity-scorer: llm-d's two strategies, the pin's health and saturation limits, and
the response header through the Scheduler."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from inferpool.scheduling.config import ConfigError, build_scheduler, parse_config
from inferpool.scheduling.framework import Scheduler
from inferpool.scheduling.plugins.session_affinity import (
    SessionAffinityParams,
    SessionAffinityScorer,
    decode_token,
    encode_token,
)

from .conftest import ep, req


def token(name: str) -> str:
    return base64.b64encode(f"default/{name}".encode()).decode()


def header_scorer(**params: object) -> SessionAffinityScorer:
    return SessionAffinityScorer(SessionAffinityParams.model_validate(params))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def session_scorer(clock: Clock, **config: object) -> SessionAffinityScorer:
    params = SessionAffinityParams.model_validate({"strategy": "session_id", "sessionIdConfig": config})
    return SessionAffinityScorer(params, clock=clock)


# -- encoded_endpoint_header ----------------------------------------------------------------


def test_token_is_base64_of_the_namespaced_name() -> None:
    endpoint = ep("vllm-1")
    assert encode_token(endpoint) == base64.b64encode(b"default/vllm-1").decode() == token("vllm-1")
    assert decode_token(encode_token(endpoint)) == "default/vllm-1"
    assert (
        decode_token("")
        == decode_token("not base64!")
        == decode_token(base64.b64encode(b"\xff").decode())
        == ""
    )


def test_the_token_pins_its_endpoint_and_nothing_else() -> None:
    scorer = header_scorer()
    a, b, c = ep("vllm-0"), ep("vllm-1"), ep("vllm-2")
    pinned = req(headers={"x-session-token": token("vllm-1")})
    assert scorer.score_column(pinned, [a, b, c]) == [0.0, 1.0, 0.0]
    assert scorer.score(pinned, [a, b, c]) == {a: 0.0, b: 1.0, c: 0.0}
    assert scorer.score_column(req(), [a, b, c]) == [0.0, 0.0, 0.0]  # no session: no preference
    garbage = req(headers={"x-session-token": "%%%"})
    assert scorer.score_column(garbage, [a, b, c]) == [0.0, 0.0, 0.0]
    other_namespace = req(headers={"x-session-token": base64.b64encode(b"prod/vllm-1").decode()})
    assert scorer.score_column(other_namespace, [a, b, c]) == [0.0, 0.0, 0.0]


def test_a_token_from_llmd_for_rank_0_finds_a_single_port_pod() -> None:
    """llm-d names endpoints `<pod>-rank-<i>` always; inferpool names a single-port pod `<pod>`."""
    scorer = header_scorer()
    llmd = req(headers={"x-session-token": token("vllm-1-rank-0")})
    assert scorer.score_column(llmd, [ep("vllm-0"), ep("vllm-1")]) == [0.0, 1.0]
    ranks = [ep("vllm-1-rank-0"), ep("vllm-1-rank-1")]
    assert scorer.score_column(req(headers={"x-session-token": token("vllm-1-rank-1")}), ranks) == [0.0, 1.0]


def test_an_endpoint_that_is_not_a_candidate_pins_nothing() -> None:
    """Unready (or filtered out, or outside the subset hint): it is not in the candidate list."""
    scorer = header_scorer()
    pinned = req(headers={"x-session-token": token("vllm-1")})
    assert scorer.score_column(pinned, [ep("vllm-0"), ep("vllm-2")]) == [0.0, 0.0]


@pytest.mark.parametrize(
    ("load", "pinned_score"),
    [
        ({"queue": 4}, 1.0),
        ({"queue": 5}, 0.0),  # admission's queue threshold: full
        ({"kv": 0.79}, 1.0),
        ({"kv": 0.8}, 0.0),  # admission's KV threshold: full
    ],
)
def test_a_saturated_endpoint_releases_the_pin(load: dict[str, float], pinned_score: float) -> None:
    scorer = header_scorer()
    pinned = req(headers={"x-session-token": token("vllm-1")})
    assert scorer.score_column(pinned, [ep("vllm-0"), ep("vllm-1", **load)]) == [0.0, pinned_score]  # type: ignore[arg-type]


def test_thresholds_and_header_are_parameters() -> None:
    scorer = header_scorer(
        queueThreshold=20, kvCacheThreshold=0.95, encodedEndpointHeaderConfig={"header": " X-Sticky "}
    )
    busy = ep("vllm-1", queue=10, kv=0.9)
    assert scorer.score_column(req(headers={"x-sticky": token("vllm-1")}), [ep("vllm-0"), busy]) == [0.0, 1.0]
    assert scorer.score_column(req(headers={"x-session-token": token("vllm-1")}), [busy]) == [0.0]


def test_response_header_names_the_endpoint_of_its_profile() -> None:
    scorer = header_scorer()
    decode, prefill = ep("vllm-0"), ep("vllm-5")
    assert scorer.response_headers(req(), {"": decode}) == {"x-session-token": token("vllm-0")}
    prefill_scorer = header_scorer(
        profileName="prefill", encodedEndpointHeaderConfig={"header": "x-session-token-prefill"}
    )
    picks = {"": decode, "prefill": prefill}
    assert prefill_scorer.response_headers(req(), picks) == {"x-session-token-prefill": token("vllm-5")}
    assert prefill_scorer.response_headers(req(), {"": decode}) == {}  # not split: no prefill pick


# -- session_id -----------------------------------------------------------------------------


def test_a_session_binds_where_it_was_routed_and_stays() -> None:
    clock = Clock()
    scorer = session_scorer(clock)
    a, b = ep("vllm-0"), ep("vllm-1")
    first = req(headers={"x-session-id": "conv-1"})
    assert scorer.score_column(first, [a, b]) == [0.0, 0.0]  # unbound: no preference
    scorer.on_routed(first, b)
    second = req(headers={"x-session-id": "conv-1"})
    assert scorer.score_column(second, [a, b]) == [0.0, 1.0]
    scorer.on_routed(second, a)  # the picker overrode the preference: the binding stays
    assert scorer.score_column(req(headers={"x-session-id": "conv-1"}), [a, b]) == [0.0, 1.0]
    assert scorer.score_column(req(headers={"x-session-id": "conv-2"}), [a, b]) == [0.0, 0.0]
    assert scorer.response_headers(second, {"": b}) == {}  # the client owns its id


def test_a_session_moves_when_its_endpoint_is_gone_or_saturated() -> None:
    clock = Clock()
    scorer = session_scorer(clock)
    a, b, c = ep("vllm-0"), ep("vllm-1"), ep("vllm-2")
    scorer.on_routed(req(headers={"x-session-id": "s"}), b)
    gone = req(headers={"x-session-id": "s"})
    assert scorer.score_column(gone, [a, c]) == [0.0, 0.0]
    scorer.on_routed(gone, c)
    assert scorer.score_column(req(headers={"x-session-id": "s"}), [a, b, c]) == [0.0, 0.0, 1.0]
    c.metrics = replace(c.metrics, waiting_queue_size=9)
    full = req(headers={"x-session-id": "s"})
    assert scorer.score_column(full, [a, b, c]) == [0.0, 0.0, 0.0]
    scorer.on_routed(full, a)
    c.metrics = replace(c.metrics, waiting_queue_size=0)
    assert scorer.score_column(req(headers={"x-session-id": "s"}), [a, b, c]) == [1.0, 0.0, 0.0]


def test_bindings_unused_for_the_ttl_are_swept() -> None:
    clock = Clock()
    scorer = session_scorer(clock, evictionTtlSeconds=30, evictionSweepSeconds=5)
    a = ep("vllm-0")
    scorer.on_routed(req(headers={"x-session-id": "old"}), a)
    clock.now += 20
    scorer.on_routed(req(headers={"x-session-id": "fresh"}), a)
    clock.now += 15  # "old" unused for 35 s, "fresh" for 15 s
    scorer.on_routed(req(headers={"x-session-id": "other"}), a)
    assert scorer.bound_sessions() == 2
    assert scorer.score_column(req(headers={"x-session-id": "old"}), [a]) == [0.0]
    assert scorer.score_column(req(headers={"x-session-id": "fresh"}), [a]) == [1.0]


def test_sources_in_order_header_then_cookie() -> None:
    clock = Clock()
    scorer = session_scorer(clock, sources=[{"header": "X-Conversation"}, {"cookie": "llm-d-session"}])
    a, b = ep("vllm-0"), ep("vllm-1")
    scorer.on_routed(req(headers={"cookie": "theme=dark; llm-d-session=abc"}), b)
    assert scorer.score_column(req(headers={"cookie": "llm-d-session=abc"}), [a, b]) == [0.0, 1.0]
    by_header = req(headers={"x-conversation": "abc", "cookie": "llm-d-session=zzz"})
    assert scorer.score_column(by_header, [a, b]) == [0.0, 1.0]
    assert scorer.score_column(req(headers={"x-session-id": "abc"}), [a, b]) == [0.0, 0.0]  # not a source


# -- configuration and the Scheduler --------------------------------------------------------

CONFIG = """
apiVersion: inference.networking.x-k8s.io/v1alpha1
kind: EndpointPickerConfig
plugins:
- type: session-affinity-scorer
  parameters: {params}
- type: queue-scorer
schedulingProfiles:
- name: default
  plugins:
  - {{pluginRef: session-affinity-scorer, weight: 10}}
  - {{pluginRef: queue-scorer, weight: 1}}
"""


def scheduler(params: str = "{}") -> Scheduler:
    return build_scheduler(parse_config(CONFIG.format(params=params)))


def test_profile_pins_the_session_over_load_and_sets_the_header() -> None:
    sched = scheduler()
    idle, busy = ep("vllm-0"), ep("vllm-1", queue=3)
    pinned = req(headers={"x-session-token": token("vllm-1")})
    result = sched.schedule(pinned, [idle, busy])
    assert result.endpoints[0] is busy
    assert sched.schedule(req(), [idle, busy]).endpoints[0] is idle
    assert sched.response_headers(pinned, {"": busy}) == {"x-session-token": token("vllm-1")}


def test_a_profile_without_header_plugins_adds_no_headers() -> None:
    config = CONFIG.format(params="{}").replace("- type: session-affinity-scorer\n  parameters: {}\n", "")
    config = config.replace("  - {pluginRef: session-affinity-scorer, weight: 10}\n", "")
    sched = build_scheduler(parse_config(config))
    assert sched.response_headers(req(), {"": ep("vllm-0")}) == {}


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ("{strategy: sticky}", "strategy"),
        (
            "{strategy: session_id, sessionIdConfig: {sources: [{attribute: agent-identity}]}}",
            "request attributes",
        ),
        ("{strategy: session_id, sessionIdConfig: {sources: [{header: a, cookie: b}]}}", "exactly one of"),
        ("{strategy: session_id, sessionIdConfig: {evictionTtlSeconds: 0}}", "evictionTtlSeconds"),
        ("{queueThreshold: 0}", "queueThreshold"),
        ("{encodedEndpointHeaderConfig: {headr: x}}", "headr"),
    ],
)
def test_bad_parameters_are_named(params: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        scheduler(params)
    assert problem in str(info.value)


def test_a_profile_that_sets_answer_headers_reads_every_answer() -> None:
    """The picker skips an unsampled answer's headers only when no plugin needs them: a
    session token is set on every answer, whatever the API."""
    assert scheduler().reads_answers("completion") and scheduler().reads_answers("embeddings")
