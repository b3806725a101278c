"""Child processes for comparisons: start, wait for readiness by polling, stop cleanly."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from inferpool.ports import kernel_port, listen_range, port_is_free

# Peers and fleets must never reach out (tokenizer downloads, telemetry): no proxy, HF offline.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "NO_PROXY": "*",
}


# Processes that pick ports side by side on one machine (parallel test workers) each take their
# own slice: "I/N" in this variable hands out only ports in blocks of PORT_BLOCK whose number is
# I modulo N, so two of them can never be handed the same port between its check and its bind.
# Child processes inherit it, so a bench run by a test picks in its test's slice.
PORT_SLICE_ENV = "INFERPOOL_PORT_SLICE"
PORT_BLOCK = 64


def port_slice() -> tuple[int, int]:
    """(index, count) from INFERPOOL_PORT_SLICE; (0, 1), every port, when unset."""
    value = os.environ.get(PORT_SLICE_ENV, "")
    if not value:
        return 0, 1
    index, _, count = value.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ValueError(f"{PORT_SLICE_ENV}={value!r}: expected I/N, e.g. 0/2") from None
    if not 0 <= i < n:
        raise ValueError(f"{PORT_SLICE_ENV}={value!r}: I must be in 0..N-1")
    return i, n


def free_ports(count: int, exclude: Collection[int] = ()) -> list[int]:
    """`count` consecutive free TCP ports on 127.0.0.1 (the sim fleet wants consecutive ones),
    below the kernel's ephemeral range (inferpool.ports says why).

    `exclude`: ports already handed out but not yet bound, which must not be handed out again.
    """
    index, slices = port_slice()
    pick_from = listen_range()
    rng = random.Random()
    for _ in range(200 * slices):
        if pick_from is not None:
            base = rng.randrange(pick_from[0], pick_from[1] - count)
        else:
            base = kernel_port("127.0.0.1")
        if base + count >= 65535:
            continue
        candidates = range(base, base + count)
        if any((p // PORT_BLOCK) % slices != index for p in candidates):
            continue
        if not set(candidates) & set(exclude) and all(port_is_free("127.0.0.1", p) for p in candidates):
            return list(candidates)
    raise RuntimeError(f"no {count} consecutive free ports")


def distinct_free_ports(count: int) -> list[int]:
    """`count` free ports, not necessarily consecutive, none handed out twice."""
    ports: list[int] = []
    for _ in range(count):
        ports += free_ports(1, exclude=ports)
    return ports


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return 0


def failure_reason(exc: Exception) -> str:
    """One line: the exception's first line and, when it carries a log tail, that tail's last line
    (a child that exited says why there: an unknown flag, a port in use)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return f"{reason} ... {lines[-1]}" if len(lines) > 1 else reason


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
    pending = list(urls)

    def answered() -> bool:
        pending[:] = [u for u in pending if http_status(u) not in ok]
        return not pending

    wait_until_ready(child, answered, lambda: pending[0], timeout)


def grpc_serving(port: int, service: str, timeout: float = 2.0) -> bool:
    """Whether grpc.health.v1 on 127.0.0.1:`port` reports `service` SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def wait_until_ready(
    child: Child, probe: Callable[[], bool], what: Callable[[], str], timeout: float
) -> None:
    """Poll `probe` until true; fail early if the child died, or after `timeout` naming `what()`."""
    deadline = time.monotonic() + timeout
    while True:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited ({child.proc.returncode}):\n{child.tail()}")
        if probe():
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{child.name} not ready after {timeout:.0f}s ({what()}):\n{child.tail()}")
        time.sleep(0.2)
