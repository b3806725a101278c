"""`inferpool epp`: flags as the upstream EPP binary's, plus `-f` manifests and `--endpoints`."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from pathlib import Path

import typer
import uvloop

from inferpool.durations import parse_go_duration_or_seconds
from inferpool.extproc.app import EppConfig, serve
from inferpool.extproc.cpu_policy import apply_cpu_policy
from inferpool.extproc.server import GrpcConfig
from inferpool.extproc.stream import DEFAULT_SAMPLES_PER_SECOND
from inferpool.extproc.workers import Supervisor
from inferpool.request.core import FLEET_SPEED_HELP


def _duration(value: str, flag: str) -> float:
    """Seconds from a Go duration as upstream's flags take ('50ms', '1m30s', '1.5h') or a bare number."""
    try:
        return parse_go_duration_or_seconds(value)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=flag) from None


def epp(
    manifests: list[Path] = typer.Option(
        [],
        "-f",
        "--filename",
        help="Manifest files/dirs with the InferencePool and models (instead of Kubernetes).",
    ),
    pool_name: str | None = typer.Option(None, "--pool-name", help="InferencePool this EPP serves."),
    pool_namespace: str = typer.Option("default", "--pool-namespace", help="Namespace of the InferencePool."),
    pool_group: str = typer.Option(
        "inference.networking.k8s.io", "--pool-group", help="API group of the pool."
    ),
    endpoints: Path | None = typer.Option(
        None, "--endpoints", help="Static endpoints file (instead of pods)."
    ),
    host: str = typer.Option("0.0.0.0", "--host", help="Address all three ports bind to."),
    grpc_port: int = typer.Option(9002, "--grpc-port", help="ext_proc gRPC port (0 picks a free one)."),
    grpc_health_port: int = typer.Option(9003, "--grpc-health-port", help="grpc.health.v1 port."),
    metrics_port: int = typer.Option(9090, "--metrics-port", help="Prometheus metrics port."),
    metrics_endpoint_auth: bool = typer.Option(
        True, "--metrics-endpoint-auth/--no-metrics-endpoint-auth", help="Require a bearer token on /metrics."
    ),
    metrics_token: str | None = typer.Option(
        None,
        "--metrics-token",
        envvar="INFERPOOL_METRICS_TOKEN",
        help="Static bearer token (default: generated).",
    ),
    refresh_metrics_interval: str = typer.Option("50ms", "--refresh-metrics-interval"),
    metrics_staleness_threshold: str = typer.Option("2s", "--metrics-staleness-threshold"),
    config_file: Path | None = typer.Option(None, "--config-file", help="EndpointPickerConfig file."),
    scheduler: str = typer.Option(
        "default", "--scheduler", help="Built-in scheduler profile (without --config-file)."
    ),
    secure_serving: bool = typer.Option(
        True,
        "--secure-serving/--no-secure-serving",
        help="TLS on the ext_proc port (self-signed by default).",
    ),
    cert_path: Path | None = typer.Option(None, "--cert-path", help="Directory with tls.crt and tls.key."),
    client_ca: Path | None = typer.Option(
        None, "--client-ca", help="CA bundle (PEM): require client certificates it signed (mTLS)."
    ),
    fallback_endpoints: int = typer.Option(
        1, "--fallback-endpoints", help="Endpoints in x-gateway-destination-endpoint (ordered fallback list)."
    ),
    response_samples_per_second: float = typer.Option(
        DEFAULT_SAMPLES_PER_SECOND,
        "--response-samples-per-second",
        help="With Envoy's response body mode NONE: responses per second read in full for usage and "
        "first-token time (the rest cost no picker CPU per token); 0 reads none.",
    ),
    every_response_status: bool = typer.Option(
        False,
        "--every-response-status",
        help="With Envoy's response body mode NONE: read every answer's response headers (status, "
        "serving endpoint) for exact error counts, not only the sampled share's; one more ext_proc "
        "message per request.",
    ),
    stream_threads: int = typer.Option(
        GrpcConfig.stream_threads,
        "--stream-threads",
        min=0,
        help="Concurrent ext_proc streams (requests in flight through this process), one thread each; "
        "one more is refused and Envoy fails it open or closed. 0: the grpc.aio server, unbounded, "
        "≈1.5x the CPU per request.",
    ),
    kubeconfig: str | None = typer.Option(
        None,
        "--kubeconfig",
        help="Kubeconfig for --pool-name mode (default: in-cluster, else ~/.kube/config).",
    ),
    ha_enable_leader_election: bool = typer.Option(
        False,
        "--ha-enable-leader-election",
        help="Several replicas: hold a Lease; only the leader writes InferenceModel status.",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        help="Picker processes sharing the gRPC ports (SO_REUSEPORT); each is a whole EPP, like a replica.",
    ),
    cpu_policy: str = typer.Option(
        "batch",
        "--cpu-policy",
        help="Linux CPU scheduling policy of the picker's threads: batch (waking, they never preempt "
        "the proxy on a shared core, so streamed chunks do not wait behind a pick; fair share kept) "
        "or normal.",
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    otlp_traces_endpoint: str | None = typer.Option(
        None,
        "--otlp-traces-endpoint",
        help="Export OpenTelemetry spans over OTLP/gRPC to this collector (vLLM's flag; e.g. "
        "http://127.0.0.1:4317); the model server's traceparent then names the picker's span. Off when not given.",
    ),
    fleet_speed: float = typer.Option(1.0, "--fleet-speed", min=1e-6, help=FLEET_SPEED_HELP),
) -> None:
    """Endpoint Picker for Envoy: ext_proc on 9002, gRPC health on 9003, metrics on 9090."""
    if not manifests and pool_name is None:
        raise typer.BadParameter("give -f PATH... or --pool-name")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        apply_cpu_policy(cpu_policy)  # before any thread or worker starts: they inherit it
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--cpu-policy") from None
    config = EppConfig(
        pool_name=pool_name,
        pool_namespace=pool_namespace,
        pool_group=pool_group,
        manifests=list(manifests),
        endpoints_file=endpoints,
        grpc=GrpcConfig(
            host=host,
            port=grpc_port,
            health_port=grpc_health_port,
            secure=secure_serving,
            cert_path=cert_path,
            client_ca=client_ca,
            fallback_endpoints=max(1, fallback_endpoints),
            response_samples_per_second=max(0.0, response_samples_per_second),
            every_status=every_response_status,
            stream_threads=stream_threads,
        ),
        metrics_host=host,
        metrics_port=metrics_port,
        metrics_auth=metrics_endpoint_auth,
        metrics_token=metrics_token,
        refresh_metrics_interval_s=_duration(refresh_metrics_interval, "--refresh-metrics-interval"),
        metrics_staleness_threshold_s=_duration(metrics_staleness_threshold, "--metrics-staleness-threshold"),
        config_file=config_file,
        scheduler=scheduler,
        kubeconfig=kubeconfig,
        leader_election=ha_enable_leader_election,
        workers=workers,
        otlp_traces_endpoint=otlp_traces_endpoint,
        fleet_speed=fleet_speed,
    )
    try:
        if workers > 1:
            _run_workers(config, log_level.upper())
        else:
            # uvloop: ≈15 % less CPU per request than asyncio's loop under grpc.aio (measured)
            uvloop.run(_run(config))
    except (ValueError, TimeoutError, ImportError, OSError, RuntimeError) as err:
        typer.echo(f"inferpool epp: {err}", err=True)
        raise typer.Exit(1) from err


async def _run(config: EppConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(config, stop)


def _run_workers(config: EppConfig, log_level: str) -> None:
    """Supervise `--workers` processes until SIGINT/SIGTERM, then stop them all."""
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    supervisor = Supervisor(config, log_level)
    try:
        for line in supervisor.start():
            print(line, flush=True)
        supervisor.watch(stopping.is_set)
    finally:
        supervisor.stop()
