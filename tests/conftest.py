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

# Tiers whose tests share servers started once per process: each goes to one worker whole.
VLLM_TIER = "tests/realvllm/"
SHARED_SERVER_TIERS = (VLLM_TIER,)
# Tests elsewhere that run the real-vLLM tier's venv, which `make test` may still be building when
# the suite starts: they go with that tier to the one worker that waits for it, so the other
# worker never idles (each asks for the `vllm_python` fixture, which checks it is listed here).
NEEDS_VLLM_ENV = (
    "tests/unit/scrape/test_kv_events.py::test_same_bytes_as_vllms_own_encoder",
    "tests/unit/scheduling/test_sched_hf_tokenizer.py::test_the_same_ids_as_transformers_apply_chat_template[",
)


def tier_of(nodeid: str) -> str:
    """The unit of work a parallel worker is given: a shared-server tier, else the test itself."""
    if nodeid.startswith(NEEDS_VLLM_ENV):
        return VLLM_TIER
    return next((tier for tier in SHARED_SERVER_TIERS if nodeid.startswith(tier)), nodeid)


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
    """As `--dist load`, except that a shared-server tier is one unit (`--dist loadgroup` would
    do it, but its group marks are lost on pytest 9, which keeps node ids elsewhere). Units go
    out largest first, so the real-vLLM tier starts at once, its fleet booting while the other
    worker runs the rest."""
    from xdist.scheduler import LoadScopeScheduling

    class TierScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return tier_of(nodeid)

    return TierScheduling(config, log)
