"""`inferpool epp --workers N`: N picker processes on the same ports, past one core's floor.

Each worker is a whole EPP (its own scrapes, KV-event subscriptions, in-flight counts and
approximate prefix index), exactly like one replica of several behind a headless Service:
one mechanism either way (docs/epp.md, "Several replicas"). The workers bind the same gRPC
ports (SO_REUSEPORT, which grpc sets on Linux); the kernel spreads Envoy's connections over
them. Worker 0 serves the public metrics port and adds up the others' metrics, which they
serve on loopback ports with the same token. A worker that dies is started again.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import secrets
import signal
import sys
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from queue import Empty
from typing import Any

import uvloop

from inferpool.extproc.app import EppConfig, serve
from inferpool.logformat import configure_logging
from inferpool.ports import free_port

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
RESTART_BACKOFF_S = 1.0


def worker_configs(config: EppConfig) -> list[EppConfig]:
    """One config per worker: shared gRPC ports and token; worker 0 on the public metrics port."""
    host = config.grpc.host
    # Port 0 would give every worker its own port: pick one, then all of them bind it.
    picked: set[int] = set()

    def pick(on: str) -> int:
        picked.add(port := free_port(on, exclude=picked))
        return port

    grpc = replace(
        config.grpc,
        port=config.grpc.port or pick(host),
        health_port=config.grpc.health_port or pick(host),
        reuse_port=True,
    )
    token = config.metrics_token
    generated = token is None and config.metrics_auth and not config.kubernetes_mode
    if generated:
        token = secrets.token_urlsafe(24)
    internal = [pick("127.0.0.1") for _ in range(config.workers - 1)]
    first = replace(
        config,
        grpc=grpc,
        metrics_token=token,
        metrics_token_generated=generated,
        workers=1,
        worker_index=0,
        peer_metrics=tuple(f"http://127.0.0.1:{port}/metrics" for port in internal),
    )
    others = [
        # Under TokenReview (no static token) the loopback ports are open to local callers only.
        replace(
            config,
            grpc=grpc,
            metrics_token=token,
            workers=1,
            worker_index=i,
            metrics_host="127.0.0.1",
            metrics_port=port,
        )
        for i, port in enumerate(internal, start=1)
    ]
    if token is None:
        others = [replace(c, metrics_auth=False) for c in others]
    return [first, *others]


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
        self.configs = worker_configs(config)
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

    def stop(self, timeout_s: float = 10.0) -> None:
        for proc in self.processes:
            if proc.exitcode is None and proc.pid is not None:
                proc.terminate()  # SIGTERM: the worker drains and stops cleanly
        deadline = time.monotonic() + timeout_s
        for proc in self.processes:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join(1.0)
