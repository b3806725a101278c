"""The broken-manifest corpus: exactly one line per problem, naming file, line, Kind/name and field.

EXPECTED.txt was written by hand-checking each line against the YAML (line numbers
and field paths); a change in any of them fails this test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from inferpool.api import load_manifests

from .cli_app import app

ROOT = Path(__file__).resolve().parents[3]
BROKEN = "tests/data/manifests-broken"


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_validate_output_is_exactly_one_line_per_problem() -> None:
    result = CliRunner().invoke(app, ["validate", "-f", BROKEN])
    expected = (ROOT / BROKEN / "EXPECTED.txt").read_text()
    assert result.output == expected
    assert result.exit_code == 1


def test_every_broken_file_reports_at_least_one_problem() -> None:
    manifests = load_manifests(BROKEN)
    reported = {e.file for e in manifests.errors + manifests.warnings}
    for path in sorted((ROOT / BROKEN).glob("*.yaml")):
        assert f"{BROKEN}/{path.name}" in reported, path.name


def test_problem_fields_are_structured() -> None:
    manifests = load_manifests(f"{BROKEN}/01-pool-v1alpha2.yaml")
    port = next(e for e in manifests.errors if e.field == "spec.targetPortNumber")
    assert (port.file, port.line, port.kind, port.name) == (
        f"{BROKEN}/01-pool-v1alpha2.yaml",
        21,
        "InferencePool",
        "bad-pool",
    )
    assert "65535" in port.message
    # the valid pool in the same file still loads
    assert [p.name for p in manifests.pools] == ["good-pool"]


def test_warnings_alone_do_not_fail(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceModel\n"
        "metadata: {name: m}\nspec: {modelName: m, poolRef: {name: nowhere}}\n"
    )
    result = CliRunner().invoke(app, ["validate", "-f", str(tmp_path)])
    assert result.exit_code == 0
    assert (
        f"{tmp_path}/m.yaml:4: InferenceModel/m: spec.poolRef.name: warning: InferencePool 'nowhere'"
        in result.output
    )
    assert "0 error(s), 1 warning(s)" in result.output
