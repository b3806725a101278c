"""`inferpool epp --workers N`: N picker processes on the same ports, past one core's floor.

Each worker is a whole EPP (its own scrapes, KV-event subscriptions, in-flight counts and
approximate prefix index), exactly like one replica of several behind a headless Service:
one mechanism either way (docs/epp.md, "Several replicas"). The workers bind the same gRPC
ports (SO_REUSEPORT, which grpc sets on Linux); the kernel spreads Envoy's connections over
them. Worker 0 serves the public metrics port and adds up the others' metrics, which they
serve on Unix sockets in a directory only this user can enter, with the same token: no port
of their own, so none to pick (a port picked for a worker to bind later could be taken by
another process in between). A worker that dies is started again.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from queue import Empty
from typing import Any

import uvloop

from inferpool.extproc.app import EppConfig, serve
from inferpool.logformat import configure_logging
from inferpool.ports import reserve_port

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
RESTART_BACKOFF_S = 1.0


# A Unix socket's path must fit sockaddr_un (108 bytes with its terminating NUL).
UNIX_PATH_MAX = 107


def worker_configs(config: EppConfig, grpc_ports: tuple[int, int], sockets: Path) -> list[EppConfig]:
    """One config per worker: the gRPC ports `grpc_ports` (ext_proc, health) shared, the token
    shared; worker 0 on the public metrics port, the others' /metrics on Unix sockets in
    `sockets`."""
    grpc = replace(config.grpc, port=grpc_ports[0], health_port=grpc_ports[1], reuse_port=True)
    token = config.metrics_token
    generated = token is None and config.metrics_auth and not config.kubernetes_mode
    if generated:
        token = secrets.token_urlsafe(24)
    internal = [sockets / f"worker-{i}.sock" for i in range(1, config.workers)]
    too_long = [path for path in internal if len(str(path).encode()) > UNIX_PATH_MAX]
    if too_long:
        raise ValueError(f"{too_long[0]}: longer than a Unix socket's path may be (set TMPDIR shorter)")
    first = replace(
        config,
        grpc=grpc,
        metrics_token=token,
        metrics_token_generated=generated,
        workers=1,
        worker_index=0,
        peer_metrics=tuple(internal),
    )
    others = [
        # Under TokenReview (no static token) the sockets are open to this user only (their
        # directory's mode), so they ask no token.
        replace(config, grpc=grpc, metrics_token=token, workers=1, worker_index=i, metrics_socket=path)
        for i, path in enumerate(internal, start=1)
    ]
    if token is None:
        others = [replace(c, metrics_auth=False) for c in others]
    return [first, *others]


def hold_grpc_ports(config: EppConfig) -> tuple[tuple[int, int], list[socket.socket]]:
    """The (ext_proc, health) ports the workers share: the configured ones, or where a port is 0,
    one the kernel picks, held by the sockets returned until the workers have bound it."""
    held: list[socket.socket] = []

    def port(configured: int) -> int:
        if configured:
            return configured
        held.append(reserve_port(config.grpc.host))
        return int(held[-1].getsockname()[1])

    return (port(config.grpc.port), port(config.grpc.health_port)), held


def _worker_main(config: EppConfig, index: int, ready: Any, log_level: str, log_format: str) -> None:
    """A worker process: one EPP until SIGTERM/SIGINT; reports its listening lines when it serves."""
    configure_logging(log_level, log_format, worker=index)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop, lambda lines: ready.put((index, lines)))

    try:
        uvloop.run(run())
    except (ValueError, TimeoutError, OSError) as err:
        ready.put((index, err))
        sys.exit(1)


class Supervisor:
    """Starts the workers, reports once all serve, restarts one that dies, stops them all."""

    def __init__(self, config: EppConfig, log_level: str = "INFO", log_format: str = "console") -> None:
        # mkdtemp: mode 0700, so only this user reaches the workers' metrics sockets
        try:
            self.sockets = Path(tempfile.mkdtemp(prefix="inferpool-epp-"))
        except OSError as err:
            raise OSError(
                f"--workers: no directory for the workers' metrics sockets ({err}); set TMPDIR to a "
                "writable directory (in Kubernetes with a read-only root file system: an emptyDir volume)"
            ) from err
        try:
            grpc_ports, self._held = hold_grpc_ports(config)
            self.configs = worker_configs(config, grpc_ports, self.sockets)
        except BaseException:
            shutil.rmtree(self.sockets, ignore_errors=True)
            raise
        self.log_level = log_level
        self.log_format = log_format
        self._ctx = multiprocessing.get_context("spawn")
        self._ready: Any = self._ctx.Queue()
        self.processes: list[BaseProcess] = []

    def _spawn(self, index: int) -> BaseProcess:
        proc = self._ctx.Process(
            target=_worker_main,
            args=(self.configs[index], index, self._ready, self.log_level, self.log_format),
            name=f"inferpool-epp-worker-{index}",
            daemon=False,
        )
        proc.start()
        return proc

    def start(self) -> list[str]:
        """Start every worker; their listening lines once all serve. RuntimeError if one fails."""
        self.processes = [self._spawn(i) for i in range(len(self.configs))]
        lines: dict[int, list[str]] = {}
        deadline = time.monotonic() + READY_TIMEOUT_S
        while len(lines) < len(self.configs):
            try:
                index, message = self._ready.get(timeout=0.2)
            except Empty:
                dead = [i for i, p in enumerate(self.processes) if p.exitcode is not None]
                if dead:
                    raise RuntimeError(
                        f"worker {dead[0]} exited ({self.processes[dead[0]].exitcode})"
                    ) from None
                if time.monotonic() > deadline:
                    raise TimeoutError("workers did not start serving in time") from None
                continue
            if isinstance(message, BaseException):
                raise RuntimeError(f"worker {index}: {message}")
            lines[index] = message
        self._release_held_ports()
        return [*lines[0], f"  workers   {len(self.configs)} processes on the ext_proc and health ports"]

    def watch(self, stopping: Any) -> None:
        """Until `stopping()` is true: restart a worker that exits (after a short pause)."""
        while not stopping():
            for i, proc in enumerate(self.processes):
                if proc.exitcode is not None and not stopping():
                    log.error("epp worker %d exited (%s); starting it again", i, proc.exitcode)
                    time.sleep(RESTART_BACKOFF_S)
                    self.processes[i] = self._spawn(i)
            time.sleep(0.2)

    def _release_held_ports(self) -> None:
        for sock in self._held:
            sock.close()
        self._held = []

    def stop(self, timeout_s: float = 10.0) -> None:
        self._release_held_ports()
        for proc in self.processes:
            if proc.exitcode is None and proc.pid is not None:
                proc.terminate()  # SIGTERM: the worker drains and stops cleanly
        deadline = time.monotonic() + timeout_s
        for proc in self.processes:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join(1.0)
        shutil.rmtree(self.sockets, ignore_errors=True)
