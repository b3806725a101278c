"""Shared helpers for tests that start real processes on loopback.

`free_port()` picks a port at run time; `Proc` starts a command in its own process group,
keeps its output in a file, waits for a line or a URL, and on teardown sends SIGINT, waits,
then SIGKILLs the group, so a failed test never leaves orphans or busy ports.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from inferpool.local.stack import port_is_free as local_port_is_free

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INFERPOOL = str(BIN / "inferpool")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server could bind the port now on 127.0.0.1 (TIME_WAIT is no owner)."""
    return local_port_is_free("127.0.0.1", port)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def wait_until(check, timeout: float = 60.0, interval: float = 0.05, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")


class Proc:
    """A child process in its own session; output goes to a temp file that tests can read."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> None:
        self.argv = argv
        self.log = tempfile.NamedTemporaryFile(prefix="inferpool-proc-", suffix=".log", delete=False)
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=cwd, env=full_env, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_for_line(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        regex = re.compile(pattern, re.M)
        found: list[re.Match[str]] = []

        def check() -> bool:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.argv[:3]} exited {self.popen.returncode}:\n{self.output()[-3000:]}"
                )
            m = regex.search(self.output())
            if m:
                found.append(m)
            return bool(m)

        wait_until(check, timeout, what=f"/{pattern}/ in output of {' '.join(self.argv[:3])}")
        return found[0]

    def interrupt(self, timeout: float = 30.0) -> int:
        """SIGINT, as Ctrl-C does; returns the exit code (SIGKILLs the group if it hangs)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(10)

    def close(self) -> None:
        self.interrupt(15)
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)  # anything the child left in its group
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()
        os.unlink(self.log.name)


@pytest.fixture
def spawn() -> Iterator[callable]:  # type: ignore[valid-type]
    """spawn(argv) -> Proc; every process is stopped at teardown."""
    procs: list[Proc] = []

    def start(argv: list[str], **kw: object) -> Proc:
        proc = Proc(argv, **kw)  # type: ignore[arg-type]
        procs.append(proc)
        return proc

    yield start
    for proc in reversed(procs):
        proc.close()


def sim_argv(port: int, *extra: str) -> list[str]:
    """`inferpool sim` (falls back to the sim's typer command if the CLI lacks the registration)."""
    probe = subprocess.run([INFERPOOL, "sim", "--help"], capture_output=True, timeout=60)
    if probe.returncode == 0:
        return [INFERPOOL, "sim", "--port", str(port), *extra]
    code = "import typer; from inferpool.sim.cli import sim_command; typer.run(sim_command)"
    return [sys.executable, "-c", code, "--port", str(port), *extra]
