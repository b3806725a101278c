"""Waiting for the real-vLLM venv that `make test` builds beside the tests (tests/vllm_env.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import vllm_env


@pytest.fixture
def venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A venv of the tier's layout under tmp_path, with no status file yet."""
    root = tmp_path / ".venv-vllm"
    (root / "bin").mkdir(parents=True)
    monkeypatch.setattr(vllm_env, "VLLM_VENV", root)
    monkeypatch.setattr(vllm_env, "VLLM_PYTHON", root / "bin" / "python")
    monkeypatch.setattr(vllm_env, "BUILT_STAMP", root / ".inferpool-vllm-stamp")
    monkeypatch.setattr(vllm_env, "STATUS_FILE", tmp_path / "build" / "vllm-env.status")
    (tmp_path / "build").mkdir()
    return root


@pytest.fixture
def builder() -> Iterator[subprocess.Popen[bytes]]:
    """A live process standing in for the make that runs the build."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc
    proc.kill()
    proc.wait()


def _finish_build(venv: Path, after_s: float, state: str) -> threading.Thread:
    def finish() -> None:
        time.sleep(after_s)
        if state == "ok":
            (venv / "bin" / "python").touch()
            (venv / ".inferpool-vllm-stamp").write_text("built")
        vllm_env.STATUS_FILE.write_text(f"{state}\n")

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def test_without_a_status_file_the_venv_is_there_or_not(venv: Path) -> None:
    assert not vllm_env.present()
    with pytest.raises(RuntimeError, match="make vllm-env"):
        vllm_env.wait_until_built(timeout_s=5)
    (venv / "bin" / "python").touch()
    assert vllm_env.present() and vllm_env.wait_until_built(timeout_s=5) == venv / "bin" / "python"


def test_a_build_in_progress_is_waited_for(venv: Path, builder: subprocess.Popen[bytes]) -> None:
    vllm_env.STATUS_FILE.write_text(f"building {builder.pid}\n")
    assert vllm_env.building() and vllm_env.present()  # no python yet: the tests run and wait
    thread = _finish_build(venv, 1.0, "ok")
    started = time.monotonic()
    assert vllm_env.wait_until_built(timeout_s=60) == venv / "bin" / "python"
    assert time.monotonic() - started >= 0.9  # it waited for the build, not for the python file
    thread.join()


def test_a_failed_build_is_an_error_that_names_the_log(venv: Path, builder: subprocess.Popen[bytes]) -> None:
    vllm_env.STATUS_FILE.write_text(f"building {builder.pid}\n")
    (venv / "bin" / "python").touch()  # install.sh makes the venv first, then fails in pip
    thread = _finish_build(venv, 0.5, "failed")
    with pytest.raises(RuntimeError, match=r"vllm-env\.log"):
        vllm_env.wait_until_built(timeout_s=60)
    thread.join()


def test_a_build_whose_make_is_gone_is_not_waited_for(venv: Path, builder: subprocess.Popen[bytes]) -> None:
    vllm_env.STATUS_FILE.write_text(f"building {builder.pid}\n")
    (venv / "bin" / "python").touch()
    builder.kill()
    builder.wait()
    assert not vllm_env.building()
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="stopped before it finished"):
        vllm_env.wait_until_built(timeout_s=60)
    assert time.monotonic() - started < 30


def test_a_build_that_does_not_end_times_out(venv: Path, builder: subprocess.Popen[bytes]) -> None:
    vllm_env.STATUS_FILE.write_text(f"building {builder.pid}\n")
    with pytest.raises(RuntimeError, match="still being built"):
        vllm_env.wait_until_built(timeout_s=1.5)


def test_a_stamp_outranks_an_older_failed_status(venv: Path) -> None:
    """`make vllm-env` after a failed `make test` built it: the stale status says nothing."""
    vllm_env.STATUS_FILE.write_text("failed\n")
    (venv / "bin" / "python").touch()
    (venv / ".inferpool-vllm-stamp").write_text("built")
    assert vllm_env.wait_until_built(timeout_s=5) == venv / "bin" / "python"
