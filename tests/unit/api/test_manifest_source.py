"""ManifestSource: the Datastore follows the files; a broken edit keeps the last good state."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from inferpool.api import load_manifests
from inferpool.sources.manifest import ManifestLoadFailed, ManifestSource
from inferpool.state import ChangeEvent, Criticality, Datastore

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gke-quickstart"
POOL = "default/vllm-llama3-8b-instruct"


def bump(path: Path) -> None:
    """Make the change visible even on filesystems with coarse mtimes."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    target = tmp_path / "m"
    shutil.copytree(EXAMPLE, target)
    return target


async def wait_for(predicate, limit_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + limit_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_initial_load_fills_datastore(manifests: Path) -> None:
    store = Datastore()
    source = ManifestSource([manifests], store, interval_s=0.05)
    loaded = await source.start()
    try:
        assert loaded.ok and source.manifests is loaded
        assert [p.key for p in store.pools()] == [POOL]
        assert {m.name for m in store.models(POOL)} == {"food-review", "llama3-base-model"}
        assert store.pools()[0].health_check is not None
    finally:
        await source.stop()


async def test_edit_add_and_remove_are_applied(manifests: Path) -> None:
    store = Datastore()
    events: list[ChangeEvent] = []
    store.subscribe(events.append)
    source = ManifestSource([manifests], store, interval_s=0.05)
    await source.start()
    try:
        events.clear()
        models = manifests / "inferencemodel.yaml"
        models.write_text(models.read_text().replace("criticality: Standard", "criticality: Sheddable"))
        bump(models)
        await wait_for(lambda: store.model_for(POOL, "food-review").criticality is Criticality.SHEDDABLE)  # type: ignore[union-attr]
        # only the edited object changed
        assert events == [ChangeEvent("model", "default/food-review")]

        extra = manifests / "sub" / "objective.yaml"
        extra.parent.mkdir()
        extra.write_text(
            "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\n"
            "metadata: {name: batch}\nspec: {priority: -1, poolRef: {name: vllm-llama3-8b-instruct}}\n"
        )
        await wait_for(lambda: store.objective(POOL, "batch") is not None)

        extra.unlink()
        (manifests / "inferencemodel.yaml").unlink()
        await wait_for(lambda: store.models() == [] and store.objectives() == [])
        assert [p.key for p in store.pools()] == [POOL]
    finally:
        await source.stop()


async def test_broken_edit_keeps_last_good_state(manifests: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = Datastore()
    source = ManifestSource([manifests], store, interval_s=0.05)
    await source.start()
    try:
        pool_file = manifests / "inferencepool.yaml"
        good = pool_file.read_text()
        pool_file.write_text(good.replace("targetPortNumber: 8000", "targetPortNumber: 0"))
        bump(pool_file)
        await wait_for(lambda: bool(source.last_errors))
        assert [e.field for e in source.last_errors] == ["spec.targetPortNumber"]
        assert store.pools()[0].target_ports == [8000]
        assert "keeping the last good state" in caplog.text

        pool_file.write_text(good.replace("targetPortNumber: 8000", "targetPortNumber: 8001"))
        bump(pool_file)
        await wait_for(lambda: store.pools()[0].target_ports == [8001])
        assert source.last_errors == []
    finally:
        await source.stop()


async def test_check_is_a_noop_without_changes(manifests: Path) -> None:
    store = Datastore()
    source = ManifestSource([manifests], store, interval_s=3600)
    await source.start()
    try:
        assert source.check() is False
        assert source.reloads == 1
    finally:
        await source.stop()


async def test_start_fails_on_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: [\n")
    source = ManifestSource([tmp_path], Datastore())
    with pytest.raises(ManifestLoadFailed) as info:
        await source.start()
    assert info.value.errors[0].file == str(tmp_path / "bad.yaml")


async def test_on_reload_callback_gets_manifest_set(manifests: Path) -> None:
    seen = []
    source = ManifestSource([manifests], Datastore(), on_reload=seen.append)
    await source.start()
    await source.stop()
    assert len(seen) == 1 and seen[0].deployments[0].name == load_manifests(manifests).deployments[0].name
