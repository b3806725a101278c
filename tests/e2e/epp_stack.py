"""The whole Envoy path for tests: simulated replicas, `inferpool epp` as a subprocess, a real Envoy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from inferpool.extproc.envoy import ACCOUNTING_MODES

from .envoy_harness import ROOT, Envoy, EnvoyConfig, find_envoy, free_port, stop_process
from .replica import Replica
from .sim_node import SimNode

Node = Replica | SimNode  # simulated vLLM replicas; Replica only where the sim cannot misbehave as needed

POOL_LABELS = {"app": "vllm-llama3-8b-instruct"}
QUICKSTART = ROOT / "examples" / "gke-quickstart"
METRICS_TOKEN = "e2e-token"

# Models on top of the guide's: a Sheddable one and one rewritten by weights.
EXTRA_MODELS = [
    {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceModel",
        "metadata": {"name": "e2e-sheddable", "namespace": "default"},
        "spec": {
            "modelName": "e2e-sheddable",
            "criticality": "Sheddable",
            "poolRef": {"name": "vllm-llama3-8b-instruct"},
            # served by the base model, so a simulated vLLM answers it when it is not shed
            "targetModels": [{"name": "meta-llama/Llama-3.1-8B-Instruct"}],
        },
    },
    {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2",
        "kind": "InferenceModel",
        "metadata": {"name": "e2e-rewrite", "namespace": "default"},
        "spec": {
            "modelName": "e2e-rewrite",
            "poolRef": {"name": "vllm-llama3-8b-instruct"},
            "targetModels": [{"name": "food-review", "weight": 50}, {"name": "cad-fabricator", "weight": 50}],
        },
    },
]


@dataclass
class EppProcess:
    proc: subprocess.Popen[bytes]
    grpc_port: int
    health_port: int
    metrics_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    async def wait_serving(self, limit_s: float = 60.0) -> None:
        """Poll grpc.health.v1 until the ext_proc service is SERVING (the pool has synced)."""
        deadline = time.monotonic() + limit_s
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.health_port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"inferpool epp exited: {self.log()}")
                try:
                    reply = await stub.Check(
                        health_pb2.HealthCheckRequest(service="envoy.service.ext_proc.v3.ExternalProcessor"),
                        timeout=2,
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"inferpool epp not serving: {self.log()}")


@dataclass
class Stack:
    replicas: list[Node]
    envoy: Envoy
    epp: EppProcess
    tmp: Path
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"{self.envoy.url}/v1"

    def by_name(self, name: str) -> Node:
        return next(r for r in self.replicas if r.name == name)


def start_epp(
    tmp: Path,
    replicas: list[Node],
    *,
    fallback: int = 1,
    scheduler: str = "legacy-v0.3",
    source_args: list[str] | None = None,
    extra: list[str] | None = None,
    extra_manifests: list[dict[str, object]] | None = None,
) -> EppProcess:
    """`inferpool epp` on free ports; `source_args` replaces the default `-f ... --endpoints ...`.

    `extra_manifests` are objects served next to the guide's and EXTRA_MODELS (one test's own models).
    """
    extra_manifest = tmp / "extra-models.yaml"
    extra_manifest.write_text(yaml.safe_dump_all([*EXTRA_MODELS, *(extra_manifests or [])]))
    endpoints = tmp / "endpoints.yaml"
    endpoints.write_text(
        yaml.safe_dump(
            {
                "endpoints": [
                    {"address": "127.0.0.1", "port": r.port, "name": r.name, "labels": POOL_LABELS}
                    for r in replicas
                ]
            }
        )
    )
    ports = free_port(), free_port(), free_port()
    log_path = tmp / f"epp-{ports[0]}.log"
    if source_args is None:
        source_args = [
            "-f", str(QUICKSTART), "-f", str(extra_manifest), "--endpoints", str(endpoints),
            "--metrics-token", METRICS_TOKEN,
        ]  # fmt: skip
    cmd = [
        sys.executable, "-m", "inferpool.cli", "epp",
        *source_args,
        "--host", "127.0.0.1",
        "--grpc-port", str(ports[0]), "--grpc-health-port", str(ports[1]), "--metrics-port", str(ports[2]),
        "--scheduler", scheduler,
        "--fallback-endpoints", str(fallback),
        "--log-level", "warning",
        *(extra or []),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    return EppProcess(proc, ports[0], ports[1], ports[2], log_path)


async def open_stack(
    stack: AsyncExitStack,
    replicas: list[Node],
    *,
    failure_mode_allow: bool = False,
    accounting: str = "sampled",
    fallback: int = 1,
    scheduler: str = "legacy-v0.3",
    source_args: list[str] | None = None,
    epp_args: list[str] | None = None,
    extra_manifests: list[dict[str, object]] | None = None,
) -> Stack:
    """Replicas, `inferpool epp` and Envoy; `accounting` is one of extproc.envoy.ACCOUNTING_MODES or
    "buffered" (whole request body, every response chunk streamed through the picker)."""
    binary = find_envoy()
    assert binary is not None
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="inferpool-e2e-")))
    for replica in replicas:
        await replica.start()
        stack.push_async_callback(replica.stop)
    epp = start_epp(
        tmp,
        replicas,
        fallback=fallback,
        scheduler=scheduler,
        source_args=source_args,
        extra=epp_args,
        extra_manifests=extra_manifests,
    )
    stack.callback(stop_process, epp.proc)
    await epp.wait_serving()
    mode = ACCOUNTING_MODES.get(accounting)
    request_body_mode, response_body_mode = (
        (mode.request_body_mode, mode.response_body_mode) if mode else ("BUFFERED", "STREAMED")
    )
    config = EnvoyConfig(
        epp_port=epp.grpc_port,
        pool_ports=[r.port for r in replicas],
        failure_mode_allow=failure_mode_allow,
        request_body_mode=request_body_mode,
        response_body_mode=response_body_mode,
        picked_cluster="pool_endpoints" if fallback > 1 else "original_destination_cluster",
    )
    envoy = await stack.enter_async_context(Envoy(binary, config))
    return Stack(replicas, envoy, epp, tmp)
