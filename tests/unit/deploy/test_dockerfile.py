"""The EPP image's Dockerfile: what the chart's Deployment relies on.

No Docker daemon here, so the image is not built in CI; this checks the contract the chart
and the upstream EPP image share (entrypoint, ports, non-root user) and that what the build
copies exists and installs the `inferpool` console script.
"""

from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from inferpool.cli import app

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    lines = DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
    out = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_final_stage_runs_inferpool_epp_as_non_root_on_upstream_ports() -> None:
    steps = instructions()
    stages = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    final = steps[stages[-1] :]
    assert all(rest.split()[0] == "python:3.11-slim" for op, rest in steps if op == "FROM")
    entrypoint = json.loads(next(rest for op, rest in final if op == "ENTRYPOINT"))
    assert entrypoint == ["inferpool", "epp"]
    assert set(next(rest for op, rest in final if op == "EXPOSE").split()) == {"9002", "9003", "9090"}
    user = next(rest for op, rest in final if op == "USER")
    assert not user.startswith("0") and user != "root"


def test_build_context_and_console_script() -> None:
    for op, rest in instructions():
        if op == "COPY" and not rest.startswith("--from"):
            *sources, _ = shlex.split(rest)
            for source in sources:
                assert (ROOT / source).exists(), source
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["inferpool"] == "inferpool.cli:main"
    # the packaged profiles (scheduler, simulator) are package data, so `pip install .` ships them
    assert "**/*.yaml" in project["tool"]["setuptools"]["package-data"]["inferpool"]
    assert CliRunner().invoke(app, ["epp", "--help"]).exit_code == 0
