"""Peer routers (PyPI `sglang-router`, `vllm-router`), each in its own venv under a cache dir.

Both are Rust routers shipped as Python wheels; they get separate venvs so neither clashes
with the other or with inferpool's dependencies. Installing uses the machine's `python3` and
pip's ordinary index configuration, once; later runs reuse the venv. Versions are pinned, so
figures from different runs compare like with like; a venv holding another version is brought
to the pin on first use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The versions pip picked when `inferpool bench overhead` was written (2026-12); bump deliberately.
PACKAGES = {"sglang-router": "sglang-router==0.3.2", "vllm-router": "vllm-router==0.1.17"}
# The `--policy` choices of the pinned versions (their --help), checked before any fleet starts.
POLICIES = {
    "sglang-router": ("random", "round_robin", "cache_aware", "power_of_two", "manual"),
    "vllm-router": (
        "random", "round_robin", "cache_aware", "kv_aware", "power_of_two", "consistent_hash",
        "sticky_least_loaded",
    ),
}  # fmt: skip
# Each router's default `--eviction-interval-secs` (its cache-aware tree's pruning timer, the one
# wall-clock interval that touches routing); in front of a slowed fleet it is stretched by 1/speed
# like inferpool's own intervals.
EVICTION_INTERVAL_S = {"sglang-router": 60.0, "vllm-router": 120.0}


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

    def pinned_version(self) -> str:
        return PACKAGES[self.package].partition("==")[2]

    def version(self) -> str | None:
        """The version installed in the peer's venv, or None when there is none."""
        python = cache_dir() / self.package / "bin" / "python"
        if not python.exists():
            return None
        done = subprocess.run(
            [str(python), "-c", f"import importlib.metadata as m; print(m.version({self.package!r}))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            return None
        return done.stdout.strip() or None

    def argv(self, port: int, workers: list[str], metrics_port: int, fleet_speed: float = 1.0) -> list[str]:
        """Both routers also serve Prometheus metrics, on a fixed port (29000) unless told otherwise,
        so two at once (a benchmark beside the smoke test) would collide. `fleet_speed`: a
        simulated fleet's --speed, which stretches the eviction timer as it does inferpool's."""
        exe = str(self.executable())
        eviction_s = max(1, round(EVICTION_INTERVAL_S[self.package] / fleet_speed))
        common = ["--host", "127.0.0.1", "--port", str(port), "--worker-urls", *workers, "--policy", self.policy,
                  "--prometheus-host", "127.0.0.1", "--prometheus-port", str(metrics_port),
                  "--eviction-interval-secs", str(eviction_s)]  # fmt: skip
        if self.package == "sglang-router":
            return [exe, "launch", *common, "--log-level", "warn"]
        return [exe, *common]


class PeerInstallError(RuntimeError):
    """A peer router's venv could not be made; the message says what pip said and what to run."""


def ensure_installed(peer: Peer) -> Path:
    """Create the peer's venv and pip-install the pinned version on first use; returns the executable."""
    if peer.installed() and peer.version() == peer.pinned_version():
        return peer.executable()
    venv = cache_dir() / peer.package
    steps = []
    if not (venv / "bin" / "pip").exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        steps.append([shutil.which("python3") or "python3", "-m", "venv", str(venv)])
    steps.append([str(venv / "bin" / "pip"), "install", "-q", PACKAGES[peer.package]])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            said = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            raise PeerInstallError(
                f"could not install {PACKAGES[peer.package]} into {venv}"
                + (f": {said[-1].strip()}" if said else "")
                + " (`make peers` installs the peers ahead; it needs the package index)"
            )
    if not peer.installed():
        raise PeerInstallError(f"{peer.package} installed but {peer.executable()} is missing")
    return peer.executable()


def main() -> None:
    """`python -m inferpool.bench.peers`: install every pinned peer (what `make peers` runs)."""
    for package in PACKAGES:
        executable = ensure_installed(Peer(package, "round_robin"))
        print(f"{PACKAGES[package]}: {executable}")


if __name__ == "__main__":
    main()
