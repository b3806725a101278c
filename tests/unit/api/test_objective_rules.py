"""InferenceObjective and InferenceModelRewrite in both API groups: llm-d-router's `llm-d.ai`
and the Inference Extension's former `inference.networking.x-k8s.io`. Every rule is checked in
both, so the two stay validated alike; the pool binding (poolRef, poolRefs, poolSelector) is
checked through loading, `inferpool validate`'s report lines and the datastore."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inferpool.api import load_text
from inferpool.api.validate import report
from inferpool.sources.convert import to_state
from inferpool.sources.manifest import ManifestSource
from inferpool.state import Datastore

from .cli_app import app

GROUPS = ["llm-d.ai/v1alpha2", "inference.networking.x-k8s.io/v1alpha2"]


def objective(api_version: str, spec: str, name: str = "o") -> str:
    return f"apiVersion: {api_version}\nkind: InferenceObjective\nmetadata: {{name: {name}}}\nspec:\n{spec}"


def rewrite(api_version: str, rules: str, binding: str = "  poolRef: {name: p}\n") -> str:
    return f"apiVersion: {api_version}\nkind: InferenceModelRewrite\nmetadata: {{name: r}}\nspec:\n{binding}{rules}"


def pool(name: str, labels: str = "{}", namespace: str = "default") -> str:
    return (
        "---\napiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\n"
        f"metadata: {{name: {name}, namespace: {namespace}, labels: {labels}}}\n"
        "spec:\n  selector: {matchLabels: {app: a}}\n  targetPorts: [{number: 8000}]\n"
        "  endpointPickerRef: {name: epp, port: {number: 9002}}\n"
    )


def only_error(text: str) -> tuple[int, str | None, str]:
    ms = load_text(text)
    assert len(ms.errors) == 1, [str(e) for e in ms.errors]
    error = ms.errors[0]
    return error.line, error.field, error.message


# -- InferenceObjective ---------------------------------------------------------------------


@pytest.mark.parametrize("api_version", GROUPS)
def test_objective_priority_is_an_int32(api_version: str) -> None:
    ms = load_text(objective(api_version, "  priority: -3\n  poolRef: {name: p}\n"))
    assert ms.errors == [] and ms.objectives[0].spec.priority == -3
    assert ms.objectives[0].api_version == api_version
    assert only_error(objective(api_version, "  priority: high\n  poolRef: {name: p}\n"))[:2] == (
        5,
        "spec.priority",
    )
    assert (
        only_error(objective(api_version, "  priority: 2147483648\n  poolRef: {name: p}\n"))[1]
        == "spec.priority"
    )
    assert load_text(objective(api_version, "  priority: -2147483648\n  poolRef: {name: p}\n")).errors == []


@pytest.mark.parametrize("api_version", GROUPS)
def test_objective_needs_a_pool_binding(api_version: str) -> None:
    assert only_error(objective(api_version, "  priority: 1\n")) == (
        4,
        "spec",
        "one of poolRef, poolRefs or poolSelector is required",
    )


@pytest.mark.parametrize("api_version", GROUPS)
def test_pool_ref_defaults_to_the_v1_pool_group(api_version: str) -> None:
    ref = load_text(objective(api_version, "  poolRef: {name: p}\n")).objectives[0].spec.pool_ref
    assert ref is not None and (ref.group, ref.kind, ref.name) == (
        "inference.networking.k8s.io",
        "InferencePool",
        "p",
    )


@pytest.mark.parametrize("api_version", GROUPS)
def test_pool_refs_rules(api_version: str) -> None:
    ms = load_text(objective(api_version, "  poolRefs: [{name: a}, {name: b}, {name: a}]\n"))
    assert ms.errors == [] and ms.objectives[0].spec.pool_names() == ["a", "b"]
    assert only_error(objective(api_version, "  poolRefs: []\n"))[1:] == (
        "spec.poolRefs",
        "should have at least 1 item after validation, not 0",
    )
    text = objective(api_version, "  poolRefs:\n  - name: a\n  - kind: InferencePool\n")
    assert only_error(text) == (7, "spec.poolRefs[1].name", "required field is missing")
    text = objective(api_version, "  poolRefs:\n  - name: a\n  - {name: b, group: Not/A.Group}\n")
    assert only_error(text)[:2] == (7, "spec.poolRefs[1].group")


@pytest.mark.parametrize("api_version", GROUPS)
def test_pool_selector_rules(api_version: str) -> None:
    def selector(body: str) -> str:
        return objective(api_version, f"  poolSelector:\n{body}")

    ok = selector(
        "    matchLabels: {tier: shared}\n    matchExpressions:\n    - {key: env, operator: NotIn, values: [dev]}\n"
    )
    assert load_text(ok).errors == []
    assert load_text(objective(api_version, "  poolSelector: {}\n")).errors == []  # selects every pool
    line, fld, message = only_error(
        selector("    matchExpressions:\n    - {key: env, operator: Like, values: [a]}\n")
    )
    assert (line, fld) == (7, "spec.poolSelector.matchExpressions[0].operator") and "'In'" in message
    assert only_error(selector("    matchExpressions:\n    - {key: env, operator: In}\n")) == (
        7,
        "spec.poolSelector.matchExpressions[0]",
        "values must be non-empty when operator is In",
    )
    assert only_error(selector("    matchExpressions:\n    - {key: env, operator: Exists, values: [a]}\n"))[
        1:
    ] == (
        "spec.poolSelector.matchExpressions[0]",
        "values must be empty when operator is Exists",
    )
    assert only_error(selector("    matchLabels: {'bad key!': x}\n"))[:2] == (
        6,
        "spec.poolSelector.matchLabels.bad key!",
    )
    assert only_error(selector("    matchLabel: {tier: shared}\n"))[1:] == (
        "spec.poolSelector.matchLabel",
        "unknown field",
    )


# -- InferenceModelRewrite ------------------------------------------------------------------


@pytest.mark.parametrize("api_version", GROUPS)
def test_rewrite_rules(api_version: str) -> None:
    valid = (
        "  rules:\n  - matches: [{model: {value: a}}]\n"
        "    targets: [{modelRewrite: a-v1, weight: 90}, {modelRewrite: a-v2, weight: 10}]\n"
        "  - targets: [{modelRewrite: default}]\n"
    )
    ms = load_text(rewrite(api_version, valid))
    assert ms.errors == [] and ms.rewrites[0].spec.rules[0].matches[0].model.type == "Exact"
    assert load_text(rewrite(api_version, "  rules: []\n")).errors == []  # the CRD sets no minItems
    assert load_text(rewrite(api_version, "  rules:\n  - matches: [{model: {value: a}}]\n")).errors == []
    assert only_error(rewrite(api_version, "")) == (4, "spec.rules", "required field is missing")
    bad_type = (
        "  rules:\n  - matches: [{model: {type: Prefix, value: a}}]\n    targets: [{modelRewrite: b}]\n"
    )
    assert only_error(rewrite(api_version, bad_type))[:2] == (7, "spec.rules[0].matches[0].model.type")
    empty = "  rules:\n  - matches: [{model: {value: ''}}]\n    targets: [{modelRewrite: b}]\n"
    assert only_error(rewrite(api_version, empty))[1] == "spec.rules[0].matches[0].model.value"
    assert only_error(rewrite(api_version, "  rules:\n  - targets: []\n"))[:2] == (7, "spec.rules[0].targets")
    mixed = "  rules:\n  - targets: [{modelRewrite: a, weight: 1}, {modelRewrite: b}]\n"
    assert only_error(rewrite(api_version, mixed))[1:] == (
        "spec.rules[0].targets",
        "weights should be set for all models, or none of the models",
    )
    heavy = "  rules:\n  - targets: [{modelRewrite: a, weight: 1000001}]\n"
    assert only_error(rewrite(api_version, heavy))[1] == "spec.rules[0].targets[0].weight"
    nameless = "  rules:\n  - targets: [{weight: 1}]\n"
    assert only_error(rewrite(api_version, nameless))[1] == "spec.rules[0].targets[0].modelRewrite"


@pytest.mark.parametrize("api_version", GROUPS)
def test_rewrite_binds_pools_like_an_objective(api_version: str) -> None:
    text = rewrite(
        api_version,
        "  rules: []\n",
        binding="  poolRefs: [{name: a}]\n  poolSelector: {matchLabels: {x: y}}\n",
    )
    ms = load_text(text)
    assert ms.errors == [] and ms.rewrites[0].spec.pool_names() == ["a"]
    assert only_error(rewrite(api_version, "  rules: []\n", binding="")) == (
        4,
        "spec",
        "one of poolRef, poolRefs or poolSelector is required",
    )


# -- `inferpool validate`: file, line and field; cross-references -----------------------------


def test_validate_names_file_line_and_field_for_the_new_fields() -> None:
    text = objective(
        "llm-d.ai/v1alpha2",
        "  poolRefs:\n  - name: a\n  - {}\n  poolSelector:\n    matchExpressions:\n    - {key: env, operator: In}\n",
    )
    lines = report(load_text(text, "tiers.yaml"))
    assert lines[:2] == [
        "tiers.yaml:7: InferenceObjective/o: spec.poolRefs[1].name: required field is missing",
        "tiers.yaml:10: InferenceObjective/o: spec.poolSelector.matchExpressions[0]: "
        "values must be non-empty when operator is In",
    ]


def test_inferpool_validate_on_a_file(tmp_path: Path) -> None:
    manifest = tmp_path / "tiers.yaml"
    manifest.write_text(
        pool("a", "{tier: shared}")
        + "---\n"
        + objective(
            "llm-d.ai/v1alpha2",
            "  poolSelector:\n    matchExpressions:\n    - {key: tier, operator: Exists, values: [x]}\n",
        )
        + "---\n"
        + objective("inference.networking.x-k8s.io/v1alpha2", "  poolRefs: [{name: a}]\n", name="old")
    )
    result = CliRunner().invoke(app, ["validate", "-f", str(manifest)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{manifest}:16: InferenceObjective/o: spec.poolSelector.matchExpressions[0]: "
        "values must be empty when operator is Exists",
        "1 file(s), 3 object(s), 1 error(s), 0 warning(s), 0 ignored",
    ]


def test_missing_pools_and_an_empty_selection_are_warnings_at_their_lines() -> None:
    text = (
        objective("llm-d.ai/v1alpha2", "  poolRefs:\n  - name: a\n  - name: gone\n")
        + "\n---\n"
        + objective("llm-d.ai/v1alpha2", "  poolSelector: {matchLabels: {tier: none}}\n", name="s")
        + pool("a", "{tier: shared}")
    )
    ms = load_text(text, "m.yaml")
    assert ms.errors == []
    assert [str(w) for w in ms.warnings] == [
        "m.yaml:7: InferenceObjective/o: spec.poolRefs[1].name: "
        "warning: InferencePool 'gone' not found in namespace 'default'",
        "m.yaml:14: InferenceObjective/s: spec.poolSelector: "
        "warning: selects no InferencePool in namespace 'default' (yet: pools added later are bound)",
    ]


def test_other_llmd_versions_are_not_served() -> None:
    assert only_error(objective("llm-d.ai/v1", "  poolRef: {name: p}\n")) == (
        1,
        "apiVersion",
        "unsupported apiVersion 'llm-d.ai/v1' for InferenceObjective",
    )


def test_same_name_in_both_groups_warns_and_the_llmd_one_is_used() -> None:
    text = (
        objective("llm-d.ai/v1alpha2", "  priority: 10\n  poolRef: {name: a}\n", name="gold")
        + "\n---\n"
        + objective(
            "inference.networking.x-k8s.io/v1alpha2", "  priority: 1\n  poolRef: {name: a}\n", name="gold"
        )
        + pool("a")
    )
    ms = load_text(text, "m.yaml")
    assert ms.errors == [] and len(ms.objectives) == 2
    assert [str(w) for w in ms.warnings] == [
        "m.yaml:9: InferenceObjective/gold: apiVersion: warning: InferenceObjective 'gold' is also defined as "
        "llm-d.ai/v1alpha2 (m.yaml:1); requests name it by name, so the llm-d.ai one is used"
    ]
    (gold,) = to_state(ms).objectives
    assert gold.priority == 10
    # The same when the old group's object comes first in the files.
    first_old = text.split("\n---\n")
    swapped = first_old[1].split("---\n")[0] + "\n---\n" + first_old[0] + pool("a")
    (gold,) = to_state(load_text(swapped)).objectives
    assert gold.priority == 10


# -- binding resolution in the datastore ----------------------------------------------------


def store_of(text: str) -> Datastore:
    ms = load_text(text)
    assert ms.errors == [], [str(e) for e in ms.errors]
    state = to_state(ms)
    store = Datastore()
    for p in state.pools:
        store.upsert_pool(p)
    for o in state.objectives:
        store.upsert_objective(o)
    for r in state.rewrites:
        store.upsert_rewrite(r)
    return store


@pytest.mark.parametrize("api_version", GROUPS)
def test_pool_ref_pool_refs_and_selector_bind_several_pools(api_version: str) -> None:
    text = (
        objective(api_version, "  priority: 5\n  poolRef: {name: a}\n  poolRefs: [{name: b}]\n", name="named")
        + "\n---\n"
        + objective(
            api_version, "  priority: 7\n  poolSelector: {matchLabels: {tier: shared}}\n", name="picked"
        )
        + "\n---\n"
        + rewrite(
            api_version,
            "  rules: []\n",
            binding="  poolSelector:\n    matchExpressions: [{key: tier, operator: Exists}]\n",
        )
        + pool("a")
        + pool("b", "{tier: shared}")
        + pool("c", "{tier: shared}")
        + pool("d", "{tier: dedicated}", namespace="other")
    )
    store = store_of(text)
    assert {o.name for o in store.objectives("default/a")} == {"named"}
    assert {o.name for o in store.objectives("default/b")} == {"named", "picked"}
    assert {o.name for o in store.objectives("default/c")} == {"picked"}
    assert store.objectives("other/d") == []  # a selector never reaches into another namespace
    assert (
        store.objective("default/c", "picked") is not None and store.objective("default/a", "picked") is None
    )
    assert [r.name for r in store.rewrites("default/b")] == ["r"] and store.rewrites("default/a") == []


async def test_a_pool_that_appears_later_is_bound_on_reload(tmp_path: Path) -> None:
    manifests = tmp_path / "m.yaml"
    tiers = objective(
        "llm-d.ai/v1alpha2", "  priority: 3\n  poolSelector: {matchLabels: {tier: shared}}\n", name="t"
    )
    manifests.write_text(tiers + pool("a", "{tier: shared}"))
    store = Datastore()
    source = ManifestSource([manifests], store, interval_s=0.05)
    await source.start()
    try:
        assert store.objective("default/a", "t") is not None
        manifests.write_text(tiers + pool("a", "{tier: shared}") + pool("late", "{tier: shared}"))
        deadline = asyncio.get_running_loop().time() + 10
        while store.pool("default/late") is None:
            assert asyncio.get_running_loop().time() < deadline, "reload not seen"
            await asyncio.sleep(0.02)
        objective_late = store.objective("default/late", "t")
        assert objective_late is not None and objective_late.priority == 3
    finally:
        await source.stop()
