"""Peer routers (PyPI `sglang-router`, `vllm-router`), each in its own venv under a cache dir.

Both are Rust routers shipped as Python wheels; they get separate venvs so neither clashes
with the other or with inferpool's dependencies. Installing uses the machine's `python3` and
pip's ordinary index configuration, once; later runs reuse the venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

PACKAGES = {"sglang-router": "sglang-router", "vllm-router": "vllm-router"}


def cache_dir() -> Path:
    return Path(os.environ.get("INFERPOOL_PEERS_DIR", Path.home() / ".cache" / "inferpool" / "peers"))


@dataclass(frozen=True)
class Peer:
    package: str
    policy: str

    @property
    def label(self) -> str:
        return f"{self.package} {self.policy}"

    def executable(self) -> Path:
        return cache_dir() / self.package / "bin" / self.package

    def installed(self) -> bool:
        return self.executable().exists()

    def argv(self, port: int, workers: list[str], metrics_port: int) -> list[str]:
        """Both routers also serve Prometheus metrics, on a fixed port (29000) unless told otherwise,
        so two at once (a benchmark beside the smoke test) would collide."""
        exe = str(self.executable())
        common = ["--host", "127.0.0.1", "--port", str(port), "--worker-urls", *workers, "--policy", self.policy,
                  "--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics_port)]  # fmt: skip
        if self.package == "sglang-router":
            return [exe, "launch", *common, "--log-level", "warn"]
        return [exe, *common]


def ensure_installed(peer: Peer) -> Path:
    """Create the peer's venv and pip-install it on first use; returns the executable."""
    if peer.installed():
        return peer.executable()
    venv = cache_dir() / peer.package
    python = shutil.which("python3") or "python3"
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", PACKAGES[peer.package]], check=True)
    if not peer.installed():
        raise RuntimeError(f"{peer.package} installed but {peer.executable()} is missing")
    return peer.executable()
