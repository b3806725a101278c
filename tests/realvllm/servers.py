"""Starting and stopping real processes for the real-vLLM tier: vLLM servers and `inferpool serve`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from free_ports import free_port
from vllm_env import VLLM_PYTHON

ROOT = Path(__file__).resolve().parents[2]
BASE_MODEL = "tiny-llama"

VLLM_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
    "VLLM_SERVER_DEV_MODE": "1",  # POST /reset_prefix_cache, for the precise-prefix test
    "VLLM_ENABLE_RESPONSES_API_STORE": "1",  # previous_response_id, for the stored-response test
}


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class Process:
    """A child process in its own process group (so its own children stop with it), logging to a file."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            cwd=str(ROOT),
            start_new_session=True,
        )
        log.close()

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def wait_http(self, url: str, timeout_s: float, ok: tuple[int, ...] = (200,)) -> None:
        """Polls url until it answers with an ok status; fails with the log if the process dies or time runs out."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} before {url} was ready; log:\n{self.log_tail()}"
                )
            if http_status(url) in ok:
                return
            time.sleep(0.5)
        raise RuntimeError(f"{self.name}: {url} not ready after {timeout_s:.0f}s; log:\n{self.log_tail()}")

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM to the group, then SIGKILL; leaves no orphans."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
            # the leader is gone; make sure nothing else in its group lingers
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            break
        self.proc = None


@dataclass
class VLLMServer:
    process: Process
    port: int
    # vLLM binds its KV-event PUB socket on this ipc path (it binds ipc and wildcard tcp endpoints,
    # connects to the rest): reachable on this host only, and it announces the path on
    # GET /kv_event_sources, where the gateway finds it
    kv_events_endpoint: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def vllm_server(
    model_dir: Path, log_path: Path, *, max_loras: int = 2, core: int | None = None
) -> VLLMServer:
    """A vllm-cpu server; with `core`, the whole process group runs on that core (taskset) and the
    engine's OMP thread is bound there. Unpinned, vLLM's automatic binding puts every server's
    engine thread on the same core (it reserves the others for its front ends), so two servers
    share one core and each runs at a fraction of its speed."""
    port = free_port()
    # ipc paths are short (sun_path holds ~107 bytes): a directory of our own under /tmp
    kv_events_endpoint = f"ipc://{tempfile.mkdtemp(prefix='ipkv')}/kv-{port}"
    kv_events = {"enable_kv_cache_events": True, "endpoint": kv_events_endpoint}
    argv = [
        str(VLLM_PYTHON),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        BASE_MODEL,
        "--load-format",
        "dummy",
        "--dtype",
        # float32: vllm-cpu's bfloat16 attention kernel uses AMX where the CPU lists it, and a VM
        # that lists AMX without granting the tile state (this CI's) kills the worker with SIGILL
        "float32",
        "--max-model-len",
        "512",
        "--enable-lora",
        "--max-lora-rank",
        "8",
        "--max-loras",
        str(max_loras),
        "--max-cpu-loras",
        "4",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--kv-events-config",
        json.dumps(kv_events),
    ]
    env = dict(VLLM_ENV)
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
        env["VLLM_CPU_OMP_THREADS_BIND"] = str(core)
    return VLLMServer(Process(f"vllm:{port}", argv, log_path, env=env), port, kv_events_endpoint)


def inferpool_argv(*args: str) -> list[str]:
    """`inferpool ...` run with the project venv's interpreter (the one running pytest)."""
    return [sys.executable, "-m", "inferpool.cli", *args]
