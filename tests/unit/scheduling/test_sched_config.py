"""EndpointPickerConfig loading: built-in profiles, custom files, precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from inferpool.scheduling import BUILTIN_PROFILES, ConfigError, load_scheduler, parse_config
from inferpool.scheduling.config import build_scheduler
from inferpool.scheduling.plugins import REGISTRY
from inferpool.scheduling.plugins.max_score import MaxScorePicker
from inferpool.scheduling.plugins.prefix_cache import PrefixCacheScorer

from .conftest import ep, req

HEAD = "apiVersion: inference.networking.x-k8s.io/v1alpha1\nkind: EndpointPickerConfig\n"


def weights(profile_name: str) -> dict[str, float]:
    return {w.scorer.name: w.weight for w in load_scheduler(profile_name).profile.scorers}


def test_upstream_v1_is_the_upstream_default_plus_the_adapter_loaded_filter() -> None:
    s = load_scheduler("upstream-v1")
    assert weights("upstream-v1") == {
        "queue-scorer": 2,
        "kv-cache-utilization-scorer": 2,
        "prefix-cache-scorer": 3,
    }
    assert s.profile.picker.name == "max-score-picker"
    assert [f.name for f in s.profile.filters] == ["adapter-loaded-filter"]


def test_default_adds_token_load_and_lora_affinity_with_prefix_dominant() -> None:
    s = load_scheduler()
    assert s.profile_name == "default"
    assert weights("default") == {
        "queue-scorer": 1,
        "kv-cache-utilization-scorer": 1,
        "prefix-cache-scorer": 3,
        "token-load-scorer": 1,
        "lora-affinity-scorer": 1,
    }
    assert s.profile.picker.name == "max-score-picker"
    assert [f.name for f in s.profile.filters] == ["adapter-loaded-filter", "stored-response-filter"]


@pytest.mark.parametrize("name", BUILTIN_PROFILES)
def test_every_builtin_loads_and_schedules(name: str) -> None:
    s = load_scheduler(name)
    # A P/D built-in runs its handler's profiles, named as llm-d names them.
    expected = "decode" if name.startswith("pd") else name
    assert s.profile_name == expected
    endpoints = [ep(f"e-{i}", queue=i) for i in range(3)]
    result = s.schedule(req("x" * 300), endpoints)
    assert len(result.ranked) >= 1 and result.profile == expected


def test_builtin_instances_are_independent() -> None:
    a, b = load_scheduler("default"), load_scheduler("default")
    pa = next(w.scorer for w in a.profile.scorers if isinstance(w.scorer, PrefixCacheScorer))
    pb = next(w.scorer for w in b.profile.scorers if isinstance(w.scorer, PrefixCacheScorer))
    assert pa is not pb and pa.index is not pb.index


def test_custom_file_with_parameters_and_named_instances(tmp_path: Path) -> None:
    path = tmp_path / "epp.yaml"
    path.write_text(
        HEAD
        + """plugins:
- type: prefix-cache-scorer
  name: prefix
  parameters: {hashBlockSize: 32, maxPrefixBlocksToMatch: 10, balanceAbsThreshold: 3}
- type: lora-affinity-scorer
- type: low-queue-filter
  parameters: {threshold: 50}
- type: weighted-random-picker
schedulingProfiles:
- name: mine
  plugins:
  - pluginRef: low-queue-filter
  - pluginRef: prefix
    weight: 5
  - pluginRef: lora-affinity-scorer
  - pluginRef: weighted-random-picker
"""
    )
    s = load_scheduler(path)
    assert s.profile_name == "mine"
    assert [(w.scorer.name, w.weight) for w in s.profile.scorers] == [
        ("prefix", 5),
        ("lora-affinity-scorer", 1),
    ]
    prefix = s.profile.scorers[0].scorer
    assert isinstance(prefix, PrefixCacheScorer)
    assert prefix.params.hash_block_size == 32 and prefix.params.balance_abs_threshold == 3
    assert [f.name for f in s.profile.filters] == ["low-queue-filter"]
    assert s.profile.picker.name == "weighted-random-picker"
    assert load_scheduler(str(path)).profile_name == "mine"


def test_profile_without_picker_gets_max_score() -> None:
    config = parse_config(
        HEAD
        + "plugins:\n- type: queue-scorer\nschedulingProfiles:\n- name: p\n  plugins:\n  - pluginRef: queue-scorer\n"
    )
    assert isinstance(build_scheduler(config).profile.picker, MaxScorePicker)


def test_choose_among_several_profiles() -> None:
    text = HEAD + (
        "plugins:\n- type: queue-scorer\n- type: random-picker\nschedulingProfiles:\n"
        "- name: a\n  plugins:\n  - pluginRef: queue-scorer\n"
        "- name: b\n  plugins:\n  - pluginRef: random-picker\n"
    )
    assert build_scheduler(parse_config(text), "b").profile_name == "b"
    with pytest.raises(ConfigError, match="2 profiles"):
        build_scheduler(parse_config(text))
    with pytest.raises(ConfigError, match="no profile named 'c'"):
        build_scheduler(parse_config(text), "c")


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_scheduler(parse_config(text, "t.yaml"), source="t.yaml")
    assert "t.yaml" in str(info.value)
    return info.value.problems


def test_errors_name_the_field() -> None:
    problems = problems_of(
        HEAD
        + """plugins:
- type: no-such-scorer
- type: prefix-cache-scorer
  parameters: {hashBlockSize: 0, bogus: 1}
- type: queue-scorer
- type: queue-scorer
- type: random-picker
- type: max-score-picker
schedulingProfiles:
- name: p
  plugins:
  - pluginRef: missing
  - pluginRef: random-picker
    weight: 2
  - pluginRef: max-score-picker
"""
    )
    text = "\n".join(problems)
    assert "plugins[0].type: unknown plugin type 'no-such-scorer'" in text
    assert "plugins[1].parameters.hashBlockSize: Input should be greater than 0" in text
    assert "plugins[1].parameters.bogus: Extra inputs are not permitted" in text
    assert "plugins[3].name: duplicate plugin name 'queue-scorer'" in text
    assert "schedulingProfiles[0].plugins[0].pluginRef: no plugin named 'missing'" in text
    assert "schedulingProfiles[0].plugins[1].weight: 'random-picker' is a picker" in text
    assert "more than one picker" in text


def test_schema_errors() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("apiVersion: v1\nkind: Other\nplugins: []\n", "x.yaml")
    text = "\n".join(info.value.problems)
    assert "apiVersion: Input should be" in text
    assert "kind: Input should be 'EndpointPickerConfig'" in text
    assert "plugins: List should have at least 1 item" in text
    assert "schedulingProfiles: Field required" in text
    with pytest.raises(ConfigError, match="line 3: not valid YAML"):
        parse_config("a: [\nb: c\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config("- 1\n")


def test_unknown_profile_or_missing_file() -> None:
    with pytest.raises(ConfigError, match="not a built-in profile"):
        load_scheduler("no-such-profile")


def test_registry_covers_the_documented_types() -> None:
    for name in [
        "queue-scorer",
        "kv-cache-utilization-scorer",
        "running-requests-scorer",
        "token-load-scorer",
        "lora-affinity-scorer",
        "prefix-cache-scorer",
        "least-request-scorer",
        "round-robin-picker",
        "random-picker",
        "max-score-picker",
        "weighted-random-picker",
    ]:
        assert name in REGISTRY
