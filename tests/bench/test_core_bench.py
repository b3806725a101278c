"""What the request core and the observation path cost per request, in process (no sockets):
route, dispatch, answer, finish, with metrics and the decision log attached as both data
planes attach them. docs/benchmarks.md quotes these; nothing asserted on time. Budget: 5 s."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from test_tracing_bench import per_call_us

from inferpool.observe.accesslog import AccessLog
from inferpool.observe.observation import Observation
from inferpool.records import HttpFacts, RequestRecord
from inferpool.request.core import Core, CoreConfig
from inferpool.scrape.scraper import ScrapeConfig
from inferpool.state import Criticality, Endpoint, ModelRoute, Pool

POOL = "default/pool"
BODY = orjson.dumps({"model": "base", "prompt": "Say something about pizza.", "max_tokens": 16})
ANSWER = orjson.dumps(
    {
        "id": "cmpl-1",
        "object": "text_completion",
        "choices": [{"text": "ok " * 16, "index": 0, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 8, "completion_tokens": 16, "total_tokens": 24},
    }
)
HEADERS = {"content-type": "application/json", "host": "127.0.0.1"}


def observed_core(profile: str, endpoints: int = 2) -> Core:
    """A core with `endpoints` ready replicas (as `inferpool bench overhead` runs two) and the
    observation path attached (metrics, decision log; no access log, as the bench runs serve).
    Configured with a scraper, as the data planes are, which is never started: what the core
    keeps per scrape interval is kept."""
    core = Core(CoreConfig(scheduler=profile, scrape=ScrapeConfig()))
    store = core.datastore
    store.upsert_pool(Pool("default", "pool", {"app": "vllm"}, [8000]))
    store.upsert_model(ModelRoute("default", "base", "base", "pool", Criticality.CRITICAL))
    for i in range(endpoints):
        store.upsert_endpoint(Endpoint(f"pod{i}", f"10.0.{i // 250}.{i % 250}", 8000, POOL))
    Observation(store, access_log=AccessLog(enabled=False)).attach(core.director, core.flow_control)
    return core


def lifecycle(core: Core) -> Callable[[], RequestRecord]:
    director = core.director

    def one() -> RequestRecord:
        routed = director.route(
            POOL, "/v1/completions", HEADERS, BODY, http=HttpFacts("POST", "/v1/completions")
        )
        routed.dispatched(routed.candidates[0])
        routed.response_started(200, "application/json")
        routed.response_data(ANSWER)
        return routed.finish(200)

    return one


@pytest.mark.parametrize(("profile", "endpoints"), [("default", 2), ("round-robin", 2), ("default", 256)])
def test_core_and_observation_per_request(
    profile: str, endpoints: int, capsys: pytest.CaptureFixture[str]
) -> None:
    one = lifecycle(observed_core(profile, endpoints))
    record = one()
    assert record.status == 200 and record.completion_tokens == 16 and record.endpoint is not None
    cost = per_call_us(one)
    with capsys.disabled():
        print(
            f"\n[bench] core lifecycle with observation, {profile} profile, {endpoints} endpoints: "
            f"{cost:.1f} us per request"
        )
