"""A client that sends made-up model names cannot grow /metrics or the dashboard without bound:
past a limit, undeclared names count under one label; declared ones always under their own."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from inferpool.errors import InferenceError
from inferpool.observe.accesslog import AccessLog
from inferpool.observe.dashboard import History, dashboard_view
from inferpool.observe.model_labels import OTHER_MODELS, UNDECLARED_LIMIT
from inferpool.observe.observation import Observation
from inferpool.records import HttpFacts
from inferpool.request.core import Core, CoreConfig
from inferpool.state import Criticality, Endpoint, ModelRoute, Pool

POOL = "default/pool"


def _core(declared: bool) -> tuple[Core, Observation]:
    core = Core(CoreConfig(scheduler="round-robin", scrape=None))
    store = core.datastore
    store.upsert_pool(Pool("default", "pool", {"app": "vllm"}, [8000]))
    if declared:
        store.upsert_model(ModelRoute("default", "base", "base", "pool", Criticality.CRITICAL))
    store.upsert_endpoint(Endpoint("pod0", "10.0.0.1", 8000, POOL))
    observation = Observation(store, access_log=AccessLog(enabled=False))
    observation.attach(core.director, core.flow_control)
    return core, observation


def _send(core: Core, model: str, status: int = 200) -> None:
    body = orjson.dumps({"model": model, "prompt": "hi", "max_tokens": 1})
    try:
        routed = core.director.route(
            POOL, "/v1/completions", {}, body, http=HttpFacts("POST", "/v1/completions")
        )
    except InferenceError:
        return  # refused, and recorded as such
    routed.dispatched(routed.candidates[0])
    routed.finish(status)


def _model_labels(observation: Observation) -> dict[str, set[str]]:
    """metric family -> the model_name values it exposes."""
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(observation.metrics.exposition().decode()):
        for sample in family.samples:
            if "model_name" in sample.labels:
                out.setdefault(family.name, set()).add(sample.labels["model_name"])
    return out


def test_made_up_names_refused_by_a_declaring_pool_stop_at_the_limit() -> None:
    core, observation = _core(declared=True)
    for i in range(UNDECLARED_LIMIT + 50):
        _send(core, f"junk-{i}")  # 404: no InferenceModel names it
    _send(core, "base")
    core.datastore.upsert_model(ModelRoute("default", "late", "late", "pool", Criticality.STANDARD))
    _send(core, "late")  # declared after the flood: still its own label
    labels = _model_labels(observation)["inference_model_request"]
    assert {"base", "late", OTHER_MODELS} <= labels
    assert len(labels) == UNDECLARED_LIMIT + 3, len(labels)
    history = History(core.datastore, observation.decisions.tally)
    view = dashboard_view(core.datastore, observation.decisions, history)
    [pool] = view["pools"]
    assert len(pool["models"]) == UNDECLARED_LIMIT + 3
    other = next(m for m in pool["models"] if m["model_name"] == OTHER_MODELS)
    assert other["stats"]["requests"] == 50 and other["stats"]["errors"] == 50


@pytest.mark.parametrize("status", [200, 404])
def test_names_passed_through_keep_their_running_count_balanced(status: int) -> None:
    # a pool without InferenceModels routes any name; the server answers (or 404s) it
    core, observation = _core(declared=False)
    for i in range(UNDECLARED_LIMIT + 20):
        _send(core, f"name-{i}", status)
    families = {f.name: f for f in text_string_to_metric_families(observation.metrics.exposition().decode())}
    running = {s.labels["model_name"]: s.value for s in families["inference_model_running_requests"].samples}
    assert set(running) == {f"name-{i}" for i in range(UNDECLARED_LIMIT)} | {OTHER_MODELS}
    assert all(value == 0 for value in running.values()), running
    total = {s.labels["model_name"]: s.value for s in families["inference_model_request"].samples}
    assert total[OTHER_MODELS] == 20 and total["name-0"] == 1


def test_a_name_declared_while_its_request_runs_is_counted_down_where_it_was_counted_up() -> None:
    core, observation = _core(declared=True)
    for i in range(UNDECLARED_LIMIT):
        _send(core, f"junk-{i}")  # fills the undeclared names
    body = orjson.dumps({"model": "late", "prompt": "hi", "max_tokens": 1})
    # undeclared names are routed only by a pool without InferenceModels: drop them first
    for route in core.datastore.models():
        core.datastore.delete_model(f"{route.namespace}/{route.name}")
    routed = core.director.route(POOL, "/v1/completions", {}, body, http=HttpFacts("POST", "/v1/completions"))
    core.datastore.upsert_model(ModelRoute("default", "late", "late", "pool", Criticality.STANDARD))
    routed.dispatched(routed.candidates[0])
    routed.finish(200)
    families = {f.name: f for f in text_string_to_metric_families(observation.metrics.exposition().decode())}
    running = {s.labels["model_name"]: s.value for s in families["inference_model_running_requests"].samples}
    assert running.get(OTHER_MODELS) == 0 and running.get("late", 0) == 0, running


def test_a_body_less_request_that_went_well_is_not_an_inference_request() -> None:
    core, observation = _core(declared=True)
    for status in (200, 200, 503):
        passthrough = core.director.route_without_body(POOL, "/health", {}, http=HttpFacts("GET", "/health"))
        passthrough.dispatched(passthrough.candidates[0])
        passthrough.finish(status)
    families = {f.name: f for f in text_string_to_metric_families(observation.metrics.exposition().decode())}
    total = {s.labels["model_name"]: s.value for s in families["inference_model_request"].samples}
    errors = {s.labels["model_name"]: s.value for s in families["inference_model_request_error"].samples}
    assert total.get("") == 1 and errors.get("") == 1  # only the failure, as an error
    assert observation.decisions.tally.models[(POOL, "")].requests == 3  # the dashboard lists all
