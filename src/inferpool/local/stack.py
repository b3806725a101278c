"""Manifests -> simulated vLLM replicas + the built-in gateway, all in one process.

Each vLLM Deployment becomes `replicas` simulated servers with the pod template's labels
(so the InferencePool selector finds them), its model, port and LoRA limits. As in the
guide's pod spec, a LoRA syncer per replica keeps its adapters matching the ConfigMap the
Deployment mounts (edits to that manifest file are picked up). Listener ports below 1024
are remapped (8080, 8081, ...) so no root is needed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from inferpool.api import ManifestSet, load_manifests
from inferpool.api.lora_config import LoRAAdapterConfig, LoRAConfigError
from inferpool.api.problems import LoadError
from inferpool.api.workloads import ModelServerDeployment
from inferpool.gateway.config import ProxyConfig, ServeConfig
from inferpool.gateway.runtime import GatewayRuntime, RuntimeConfig
from inferpool.lora.syncer import LoRASyncer, SyncerOptions
from inferpool.ports import port_is_free
from inferpool.roles import can_prefill
from inferpool.sim import SimConfig, SimFleet
from inferpool.sim.nixl import KVTransferConfig
from inferpool.sources.convert import to_pool
from inferpool.sources.manifest import ManifestLoadFailed
from inferpool.sources.static import StaticEndpoint

log = logging.getLogger(__name__)

FIRST_REMAPPED_PORT = 8080


@dataclass(frozen=True)
class UpConfig:
    paths: tuple[str, ...]
    host: str = "127.0.0.1"
    speed: float = 1.0
    admin_port: int | None = 9090
    profile: str | None = None
    access_log: bool = True
    max_retries: int = 2
    otlp_traces_endpoint: str | None = None  # spans over OTLP/gRPC (docs/tracing.md); None: off


@dataclass
class Replica:
    deployment: str
    name: str  # "<deployment>-<i>", the endpoint name in the pool
    port: int
    labels: dict[str, str] = field(default_factory=dict)


def listener_port_map(ports: Sequence[int], host: str, taken: set[int]) -> dict[int, int]:
    """Ports below 1024 -> 8080, 8081, ... (skipping ports in use or taken by replicas)."""
    out: dict[int, int] = {}
    candidate = FIRST_REMAPPED_PORT
    for port in sorted(set(ports)):
        if port >= 1024:
            continue
        while candidate in taken or candidate in ports or not port_is_free(host, candidate):
            candidate += 1
        out[port] = candidate
        taken.add(candidate)
        candidate += 1
    return out


def sim_configs(
    deployment: ModelServerDeployment, manifests: ManifestSet, config: UpConfig, taken: set[int]
) -> list[SimConfig]:
    """One SimConfig per replica: the Deployment's port and the next ones where free, else a free port.

    A `--kv-transfer-config` in the vLLM args makes the replicas P/D-capable, as vLLM would be.
    """
    try:
        kv_transfer = KVTransferConfig.from_vllm_args(deployment.args)
    except ValueError as err:
        origin = deployment.origin
        raise ManifestLoadFailed([LoadError(origin.file if origin else "<manifest>", origin.line if origin else 0,
                                            "Deployment", deployment.name, "args",
                                            f"--kv-transfer-config: {err}")]) from None  # fmt: skip
    out: list[SimConfig] = []
    for i in range(deployment.replicas):
        port = deployment.port + i
        if port in taken or not port_is_free(config.host, port):
            port = 0
        else:
            taken.add(port)
        out.append(
            SimConfig(
                model=deployment.model or "meta-llama/Llama-3.1-8B-Instruct",
                served_model_name=deployment.served_model_name,
                host=config.host,
                port=port,
                lora_modules=[],  # adapters come from the LoRA syncer, as in the guide
                max_loras=max(1, deployment.max_loras),
                max_cpu_loras=deployment.max_cpu_loras,
                speed=config.speed,
                seed=i,
                kv_transfer=kv_transfer.for_replica(i, deployment.replicas) if kv_transfer else None,
            )
        )
    return out


# The built-in profile `inferpool up` runs when the manifests deploy prefill pods and no
# --profile is given: in Kubernetes the EPP's config would say so (the Helm chart's `pd` values).
PD_PROFILE = "pd"


def default_profile(manifests: ManifestSet) -> str | None:
    """`pd` when a Deployment's pods carry a prefill role (`llm-d.ai/role`), else the gateway's default."""
    return PD_PROFILE if any(can_prefill(d.labels) for d in manifests.deployments) else None


def base_models(manifests: ManifestSet) -> dict[str, str]:
    """Pool key -> the base model its selected Deployment serves (the parent of adapters in /v1/models)."""
    out: dict[str, str] = {}
    for p in manifests.pools:
        pool = to_pool(p)
        for d in manifests.deployments:
            if d.namespace == pool.namespace and pool.selects(d.labels) and d.served_model_name:
                out[pool.key] = d.served_model_name
                break
    return out


def lora_config_reader(namespace: str, name: str) -> Callable[[Path], LoRAAdapterConfig]:
    """Reads one ConfigMap's vLLMLoRAConfig out of a manifest file (the syncer re-reads it on edits)."""

    def read(path: Path) -> LoRAAdapterConfig:
        manifests = load_manifests([str(path)])
        for config_map in manifests.lora_configs:
            if config_map.name == name and config_map.namespace == namespace:
                return config_map.config
        raise LoRAConfigError(f"{path}: ConfigMap {namespace}/{name} with a vLLMLoRAConfig not found")

    return read


def lora_syncers(
    manifests: ManifestSet, deployment: ModelServerDeployment, urls: list[str]
) -> list[LoRASyncer]:
    """One syncer per replica of `deployment`, driven by the LoRA ConfigMap it mounts."""
    config_map = manifests.lora_config_for(deployment)
    if config_map is None:
        return []
    path = config_map.origin.file if config_map.origin is not None else None
    return [
        LoRASyncer(
            config_map.config,
            config_path=path,
            options=SyncerOptions(base_url=url, seed=i),
            loader=lora_config_reader(config_map.namespace, config_map.name),
        )
        for i, url in enumerate(urls)
    ]


class LocalStack:
    """Simulated replicas for every vLLM Deployment, then the gateway over them."""

    def __init__(self, config: UpConfig) -> None:
        self.config = config
        self.fleet: SimFleet | None = None
        self.replicas: list[Replica] = []
        self.runtime: GatewayRuntime | None = None
        self.syncers: list[LoRASyncer] = []
        self.remapped: dict[int, int] = {}
        self.profile: str | None = config.profile  # the scheduler profile, once start() has chosen it

    async def start(self) -> None:
        manifests = load_manifests(list(self.config.paths))
        if manifests.errors:
            raise ManifestLoadFailed(manifests.errors)
        if self.profile is None:
            self.profile = default_profile(manifests)
        taken: set[int] = set()
        listener_ports = [lis.port for g in manifests.gateways for lis in g.spec.listeners]
        taken.update(p for p in listener_ports if p >= 1024)
        if self.config.admin_port:
            taken.add(self.config.admin_port)
        configs: list[tuple[ModelServerDeployment, list[SimConfig]]] = [
            (d, sim_configs(d, manifests, self.config, taken)) for d in manifests.deployments
        ]
        self.fleet = SimFleet([c for _, cs in configs for c in cs])
        await self.fleet.start()
        try:
            endpoints: list[StaticEndpoint] = []
            replicas = iter(self.fleet.replicas)
            for deployment, cs in configs:
                for i in range(len(cs)):
                    sim = next(replicas)
                    name = f"{deployment.name}-{i}"
                    self.replicas.append(Replica(deployment.name, name, sim.port, dict(deployment.labels)))
                    endpoints.append(
                        StaticEndpoint(
                            address=self.config.host, port=sim.port, name=name, labels=deployment.labels
                        )
                    )
                    taken.add(sim.port)
            await asyncio.wait_for(self.fleet.wait_ready(), 60)
            urls = iter(r.url for r in self.fleet.replicas)
            for deployment, cs in configs:
                mine = [next(urls) for _ in cs]
                self.syncers.extend(lora_syncers(manifests, deployment, mine))
            for syncer in self.syncers:
                await syncer.start()
            await asyncio.wait_for(self._adapters_loaded(), 60)
            self.remapped = listener_port_map(listener_ports, self.config.host, taken)
            serve = ServeConfig(
                host=self.config.host,
                admin_port=self.config.admin_port,
                proxy=ProxyConfig(max_retries=self.config.max_retries),
                port_map=tuple(self.remapped.items()),
                otlp_traces_endpoint=self.config.otlp_traces_endpoint,
            )
            runtime_config = RuntimeConfig(
                serve=serve,
                profile=self.profile,
                access_log=self.config.access_log,
                base_models=base_models(manifests),
            )
            self.runtime = GatewayRuntime(list(self.config.paths), runtime_config, endpoints)
            await self.runtime.start()
        except BaseException:
            await self.stop()
            raise

    async def _adapters_loaded(self) -> None:
        """Ready means the guide's curl works: every replica has its ConfigMap's adapters."""
        # Polled: the syncers expose no event for "in sync".
        while not all(s.synced for s in self.syncers):  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for syncer in self.syncers:
            await syncer.stop()
        self.syncers = []
        if self.runtime is not None:
            await self.runtime.stop()
            self.runtime = None
        if self.fleet is not None:
            await self.fleet.stop()
            self.fleet = None
