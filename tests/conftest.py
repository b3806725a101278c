"""The tests' root: its directory is on sys.path for every tier, so that `free_ports` (the one
helper that hands out ports) imports the same way from each."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import vllm_env
from inferpool.bench.procs import PORT_SLICE_ENV

# `make test` runs the suite in parallel workers (pytest-xdist); each picks its ports in its own
# slice, and so does every process it starts (they inherit the variable).
if "PYTEST_XDIST_WORKER" in os.environ:
    _worker = int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw"))
    os.environ[PORT_SLICE_ENV] = f"{_worker}/{os.environ['PYTEST_XDIST_WORKER_COUNT']}"

# The real-vLLM tier's tests share one fleet of servers started once per process, so the tier goes
# to one worker whole. Tests elsewhere that run its venv, which `make test` may still be building
# when the suite starts, go with it to that worker, which waits for the venv anyway, so the other
# worker never idles (each asks for the `vllm_python` fixture, which checks it is listed here).
VLLM_TIER = "tests/realvllm/"
NEEDS_VLLM_ENV = (
    "tests/unit/scrape/test_kv_events.py::test_same_bytes_as_vllms_own_encoder",
    "tests/unit/scheduling/test_sched_hf_tokenizer.py::test_the_same_ids_as_transformers_apply_chat_template",
)


def tier_of(nodeid: str) -> str:
    """The unit of work a parallel worker is given: the real-vLLM tier, else the test itself."""
    return VLLM_TIER if nodeid.startswith((VLLM_TIER, *NEEDS_VLLM_ENV)) else nodeid


@pytest.fixture
def vllm_python(request: pytest.FixtureRequest) -> Path:
    """The real-vLLM tier's python, once `make test` has built its venv (tests/vllm_env.py)."""
    if tier_of(request.node.nodeid) != VLLM_TIER:
        pytest.fail(
            f"{request.node.nodeid} runs the vLLM venv: list it in NEEDS_VLLM_ENV (tests/conftest.py)"
        )
    try:
        return vllm_env.wait_until_built()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.hookimpl(optionalhook=True)  # a known hook only where xdist is loaded (not under -p no:xdist)
def pytest_xdist_make_scheduler(config: Any, log: Any) -> Any:
    """As `--dist load`, except that the real-vLLM tier is one unit (`--dist loadgroup` would
    do it, but its group marks are lost on pytest 9, which keeps node ids elsewhere). Units go
    out largest first, so the real-vLLM tier starts at once, its fleet booting while the other
    worker runs the rest."""
    from xdist.scheduler import LoadScopeScheduling

    class TierScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return tier_of(nodeid)

    return TierScheduling(config, log)
