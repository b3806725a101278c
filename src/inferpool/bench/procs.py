"""Child processes for comparisons: start, wait for readiness by polling, stop cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from inferpool.local.stack import port_is_free

# Peers and fleets must never reach out (tokenizer downloads, telemetry): no proxy, HF offline.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "NO_PROXY": "*",
}


def free_ports(count: int) -> list[int]:
    """`count` consecutive free TCP ports on 127.0.0.1 (the sim fleet wants consecutive ones)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count >= 65535:
            continue
        if all(port_is_free("127.0.0.1", base + i) for i in range(count)):
            return list(range(base, base + count))
    raise RuntimeError(f"no {count} consecutive free ports")


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return 0


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (drain), then SIGKILL if it does not exit; the whole process group."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass


def spawn(name: str, argv: list[str], logdir: Path, env: dict[str, str] | None = None) -> Child:
    logdir.mkdir(parents=True, exist_ok=True)
    log = logdir / f"{name}.log"
    fh = log.open("wb")
    full_env = {**os.environ, **OFFLINE_ENV, **(env or {})}
    proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    fh.close()
    return Child(name, proc, log)


def wait_ready(child: Child, urls: list[str], timeout: float = 120.0, ok: tuple[int, ...] = (200,)) -> None:
    """Poll until every URL answers one of `ok`; fail early if the child died."""
    deadline = time.monotonic() + timeout
    pending = list(urls)
    while pending:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited ({child.proc.returncode}):\n{child.tail()}")
        pending = [u for u in pending if http_status(u) not in ok]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} not ready after {timeout:.0f}s ({pending[0]}):\n{child.tail()}")
        time.sleep(0.2)
