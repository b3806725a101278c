"""Unit tests of the syncer's parts: backoff timing, file signatures, desired state, metrics."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inferpool.api.lora_config import LoRAConfigError, load_lora_config, parse_lora_config
from inferpool.lora.backoff import Backoff, BackoffPolicy
from inferpool.lora.desired import AdapterSpec, desired_state
from inferpool.lora.metrics import SyncerMetrics
from inferpool.lora.watch import FileWatcher

GUIDE = {
    "vLLMLoRAConfig": {
        "name": "vllm-llama3.1-8b-instruct",
        "port": 8000,
        "defaultBaseModel": "meta-llama/Llama-3.1-8B-Instruct",
        "ensureExist": {
            "models": [
                {"id": "food-review", "source": "Kawon/llama3.1-food-finetune_v14_r8"},
                {"id": "cad-fabricator", "source": "redcathode/fabricator", "base-model": "other/base"},
            ]
        },
        "ensureNotExist": {"models": [{"id": "old", "source": "x/old"}]},
    }
}


def test_backoff_grows_and_caps() -> None:
    policy = BackoffPolicy(base_s=1.0, factor=2.0, cap_s=5.0, jitter=0.0)
    rng = random.Random(0)
    assert [policy.delay(n, rng) for n in range(6)] == [0.0, 1.0, 2.0, 4.0, 5.0, 5.0]


@given(failures=st.integers(min_value=1, max_value=40), seed=st.integers(min_value=0, max_value=2**32))
def test_backoff_jitter_stays_within_bounds(failures: int, seed: int) -> None:
    policy = BackoffPolicy(base_s=0.5, factor=2.0, cap_s=30.0, jitter=0.5)
    raw = min(30.0, 0.5 * 2.0 ** (failures - 1))
    assert raw * 0.5 <= policy.delay(failures, random.Random(seed)) <= raw


def test_backoff_state() -> None:
    b = Backoff(BackoffPolicy(base_s=1.0, jitter=0.0))
    assert b.ready(0.0)
    assert b.failed(now=10.0) == 1.0 and not b.ready(10.5) and b.ready(11.0)
    assert b.failed(now=11.0) == 2.0 and b.failures == 2
    b.succeeded()
    assert b.failures == 0 and b.ready(0.0)


def test_jitter_spreads_replicas() -> None:
    policy = BackoffPolicy()
    delays = {round(policy.delay(3, random.Random(seed)), 6) for seed in range(20)}
    assert len(delays) > 10  # twenty syncers do not retry in lockstep


def test_desired_state_resolves_base_models() -> None:
    d = desired_state(parse_lora_config(GUIDE))
    assert (d.host, d.port) == ("localhost", 8000)
    assert d.ensure_exist == (
        AdapterSpec("food-review", "Kawon/llama3.1-food-finetune_v14_r8", "meta-llama/Llama-3.1-8B-Instruct"),
        AdapterSpec("cad-fabricator", "redcathode/fabricator", "other/base"),
    )
    assert d.ensure_not_exist == (AdapterSpec("old", "x/old", "meta-llama/Llama-3.1-8B-Instruct"),)


def test_adapter_in_both_lists_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "vLLMLoRAConfig:\n  ensureExist: {models: [{id: a, source: s}]}\n"
        "  ensureNotExist: {models: [{id: a, source: s}]}\n"
    )
    with pytest.raises(LoRAConfigError, match="both ensureExist and ensureNotExist"):
        load_lora_config(path)


def test_watcher_sees_edits_and_ignores_touchless_polls(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a")
    w = FileWatcher(path)
    assert not w.changed()
    path.write_text("bb")
    assert w.changed() and not w.changed()
    path.unlink()
    assert not w.changed()  # missing (mid-swap) is not a change; the last good file stays in force


def test_watcher_sees_a_configmap_swap_with_identical_mtime(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "..v1", tmp_path / "..v2"
    v1.mkdir()
    v2.mkdir()
    (v1 / "c.yaml").write_text("same size")
    (v2 / "c.yaml").write_text("same size")
    st1 = os.stat(v1 / "c.yaml")
    os.utime(v2 / "c.yaml", ns=(st1.st_atime_ns, st1.st_mtime_ns))
    os.symlink("..v1", tmp_path / "..data")
    os.symlink("..data/c.yaml", tmp_path / "c.yaml")
    w = FileWatcher(tmp_path / "c.yaml")
    os.symlink("..v2", tmp_path / "..tmp")
    os.replace(tmp_path / "..tmp", tmp_path / "..data")
    assert w.changed()


def test_metrics_names() -> None:
    m = SyncerMetrics()
    m.set_status("food-review", True)
    m.set_status("old", False)
    m.failed_attempts.labels(adapter_name="food-review", operation="load").inc()
    text = m.exposition().decode()
    assert 'lora_syncer_adapter_status{adapter_name="food-review"} 1.0' in text
    assert 'lora_syncer_adapter_status{adapter_name="old"} 0.0' in text
    assert 'lora_syncer_failed_attempts_total{adapter_name="food-review",operation="load"} 1.0' in text
    m.forget("old")
    m.forget("never-seen")
    assert 'adapter_name="old"' not in m.exposition().decode()
