"""`inferpool validate` never shows a traceback, whatever it is fed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from .cli_app import app

EXE = Path(sys.executable).parent / "inferpool"
ROOT = Path(__file__).resolve().parents[3]

NASTY = {
    "binary.yaml": b"\x00\x01\xff\xfe",
    "tabs.yaml": b"a:\n\t- b\n",
    "anchors.yaml": b"a: &x [*x]\n",
    "scalar.yaml": b"just a string\n",
    "deep.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: 'vLLMLoRAConfig: [oops'}\n",
    "types.yaml": b"apiVersion: 1\nkind: {}\nmetadata: []\n",
    "meta.yaml": b"apiVersion: apps/v1\nkind: Deployment\nmetadata: 3\nspec: []\n",
    "dep.yaml": b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {containers: [3, {image: vllm, args: 5, env: 7}]}}}\n",
    "secret.yaml": b"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\ndata: [1]\n",
    "empty.yaml": b"",
    "list.yaml": b"apiVersion: v1\nkind: List\nitems: [1, {kind: X}]\n",
}


@pytest.fixture
def nasty(tmp_path: Path) -> Path:
    for name, content in NASTY.items():
        (tmp_path / name).write_bytes(content)
    (tmp_path / "dir.yaml").mkdir()  # a directory with a manifest suffix
    return tmp_path


def test_cli_runner_no_exception(nasty: Path) -> None:
    result = CliRunner().invoke(app, ["validate", "-f", str(nasty), "-f", str(nasty / "missing.yaml")])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "internal error" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert "error(s)" in last


def test_subprocess_broken_inputs_no_traceback(nasty: Path) -> None:
    proc = subprocess.run(
        [str(EXE), "validate", "-f", str(nasty), "-f", str(ROOT / "tests/data/manifests-broken")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for line in proc.stdout.strip().splitlines()[:-1]:
        assert line.startswith(("note: ", str(nasty), str(ROOT))), line


def test_subprocess_requires_a_path() -> None:
    proc = subprocess.run([str(EXE), "validate"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
