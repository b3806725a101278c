"""The compiled load generator (bench/loadgen/loadgen.c): build it, run it, read its JSON.

A Python client on the same core as the backends would be the bottleneck long before Envoy
is; the C program is not, and it measures open-loop latency from each request's intended send
time and every streamed chunk against the backend's send stamp (see its header comment).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A source checkout's files (as deploy/envoy/envoy.yaml for the Envoy contenders).
ROOT = Path(__file__).resolve().parents[3]
SOURCE = ROOT / "bench" / "loadgen" / "loadgen.c"
BINARY = ROOT / "build" / "loadgen" / "loadgen"


def ensure_built() -> Path:
    """The binary: $INFERPOOL_LOADGEN, else build/loadgen/loadgen, (re)built by `make` when stale."""
    explicit = os.environ.get("INFERPOOL_LOADGEN")
    if explicit:
        return Path(explicit)
    if not SOURCE.is_file():
        raise FileNotFoundError(
            f"{SOURCE} not found: the overhead bench needs a source checkout of inferpool"
        )
    if not BINARY.exists() or BINARY.stat().st_mtime < SOURCE.stat().st_mtime:
        done = subprocess.run(
            ["make", "-s", "-C", str(ROOT), "loadgen"], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0 or not BINARY.exists():
            raise RuntimeError(f"building {BINARY} failed:\n{done.stdout}{done.stderr}")
    return BINARY


@dataclass(frozen=True)
class LoadSpec:
    """One loadgen run: open loop at `rate` req/s, or closed loop (`rate` 0) over `connections`."""

    body: bytes
    duration_s: float
    connections: int
    rate: float = 0.0
    path: str = "/v1/completions"
    timeout_s: float = 30.0
    drain_s: float = 5.0

    @property
    def open_loop(self) -> bool:
        return self.rate > 0

    def argv(self, binary: Path, targets: list[str]) -> list[str]:
        argv = [str(binary)]
        for target in targets:
            argv += ["--target", target]
        argv += ["--path", self.path, "--body", self.body.decode(), "--duration", f"{self.duration_s:g}",
                 "--connections", str(self.connections), "--timeout", f"{self.timeout_s:g}",
                 "--drain", f"{self.drain_s:g}"]  # fmt: skip
        if self.open_loop:
            argv += ["--mode", "open", "--rate", f"{self.rate:g}"]
        else:
            argv += ["--mode", "closed"]
        return argv


def run(binary: Path, targets: list[str], spec: LoadSpec, cpus: str | None = None) -> dict[str, Any]:
    """Run once (pinned to `cpus` with taskset when given) and return its result object."""
    argv = spec.argv(binary, targets)
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    limit = spec.duration_s + spec.drain_s + 60
    done = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result
