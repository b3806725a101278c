"""The real-vLLM tier's venv (.venv-vllm, built by tests/realvllm/install.sh), which `make test`
may still be building when the tests start.

It is the longest install (3.5 GB with uv: ≈78 s alone, 117–136 s beside the tests; 225–260 s
with pip) and only a few tests need it, so `make test` builds it beside the suite rather than
before it. While it does, build/vllm-env.status reads `building <pid>` (the pid of the make that
runs the build), then `ok` or `failed`; the tests that need the venv wait for it here. Without
that file (a venv built by `make vllm-env`, or none), the venv is there or it is not, as before.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VLLM_VENV = Path(os.environ.get("VLLM_VENV", ROOT / ".venv-vllm"))
VLLM_PYTHON = VLLM_VENV / "bin" / "python"
BUILT_STAMP = VLLM_VENV / ".inferpool-vllm-stamp"  # install.sh writes it last
STATUS_FILE = ROOT / "build" / "vllm-env.status"
BUILD_LOG = ROOT / "build" / "vllm-env.log"
# A cold pip cache downloads ≈1 GB of wheels; CI gives the whole run 90 minutes.
BUILD_TIMEOUT_S = 40 * 60.0


def _status() -> tuple[str, int | None]:
    """The build's state word and, while building, its make's pid; ("", None) without a file."""
    try:
        words = STATUS_FILE.read_text().split()
    except OSError:
        return "", None
    if not words:
        return "", None
    pid = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
    return words[0], pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def building() -> bool:
    """`make test` is building the venv now (a build whose make has gone is not building)."""
    state, pid = _status()
    return state == "building" and pid is not None and _alive(pid)


def present() -> bool:
    """The venv is there, or being built: the tests that need it run (and wait) rather than skip."""
    return VLLM_PYTHON.exists() or building()


def wait_until_built(timeout_s: float = BUILD_TIMEOUT_S) -> Path:
    """Wait while `make test` builds the venv; its python, or a RuntimeError that says why not."""
    deadline = time.monotonic() + timeout_s
    while building():
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{VLLM_VENV} was still being built after {timeout_s:.0f} s (log: {BUILD_LOG})"
            )
        time.sleep(1.0)
    state, _ = _status()
    if not BUILT_STAMP.exists():  # (a stamp means built, whatever an older status file says)
        if state == "failed":
            raise RuntimeError(f"make test could not build {VLLM_VENV}: see {BUILD_LOG}")
        if state == "building":
            raise RuntimeError(f"the build of {VLLM_VENV} stopped before it finished: run `make vllm-env`")
    if not VLLM_PYTHON.exists():
        raise RuntimeError(f"{VLLM_PYTHON} not found: run `make vllm-env`")
    return VLLM_PYTHON
