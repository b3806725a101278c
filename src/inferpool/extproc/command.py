"""`inferpool epp`: flags as the upstream EPP binary's, plus `-f` manifests and `--endpoints`.

Upstream's command line is taken as its Go binary takes it (`-v 2`, `--secure-serving=false`,
its environment variables), so the upstream `inferencepool` chart runs this image unchanged;
the flags that only exist there are in their own help panel, each saying what it does here.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

import typer
import uvloop

from inferpool.durations import parse_go_duration_or_seconds
from inferpool.extproc.app import EppConfig, serve
from inferpool.extproc.cpu_policy import apply_cpu_policy
from inferpool.extproc.protocol import DESTINATION_HEADER, DESTINATION_NAMESPACE
from inferpool.extproc.server import GrpcConfig
from inferpool.extproc.stream import DEFAULT_SAMPLES_PER_SECOND
from inferpool.extproc.upstream_flags import GoFlagsCommand, flag_metric_map
from inferpool.extproc.workers import Supervisor
from inferpool.logformat import configure_logging
from inferpool.request.core import FLEET_SPEED_HELP
from inferpool.request.resolve import FAIRNESS_HEADER
from inferpool.scheduling.config import ConfigError, build_scheduler, parse_config

log = logging.getLogger(__name__)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

UPSTREAM = "Upstream EPP flags"
UPSTREAM_DEBUG = 4  # upstream's logutil.DEBUG verbosity


def upstream_option(default: Any, *names: str, **kwargs: Any) -> Any:
    """An option only upstream's EPP has, listed in its own help panel."""
    return typer.Option(default, *names, rich_help_panel=UPSTREAM, **kwargs)


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
    pool_name: str | None = typer.Option(
        None, "--pool-name", envvar="POOL_NAME", help="InferencePool this EPP serves."
    ),
    pool_namespace: str | None = typer.Option(
        None,
        "--pool-namespace",
        envvar="POOL_NAMESPACE",
        help="Namespace of the InferencePool. Default: in Kubernetes mode NAMESPACE (upstream's chart "
        "sets it to the pod's), else default.",
    ),
    pool_group: str = typer.Option(
        "inference.networking.k8s.io", "--pool-group", help="API group of the pool."
    ),
    endpoints: Path | None = typer.Option(
        None, "--endpoints", help="Static endpoints file (instead of pods)."
    ),
    host: str = typer.Option("0.0.0.0", "--host", help="Address all three ports bind to."),
    grpc_port: int = typer.Option(
        9002,
        "--grpc-port",
        envvar="GRPC_PORT",
        min=0,
        max=65535,
        help="ext_proc gRPC port (0 picks a free one).",
    ),
    grpc_health_port: int = typer.Option(
        9003, "--grpc-health-port", envvar="GRPC_HEALTH_PORT", min=0, max=65535, help="grpc.health.v1 port."
    ),
    metrics_port: int = typer.Option(
        9090, "--metrics-port", min=0, max=65535, help="Prometheus metrics port."
    ),
    metrics_endpoint_auth: bool = typer.Option(
        True, "--metrics-endpoint-auth/--no-metrics-endpoint-auth", help="Require a bearer token on /metrics."
    ),
    metrics_token: str | None = typer.Option(
        None,
        "--metrics-token",
        envvar="INFERPOOL_METRICS_TOKEN",
        help="Static bearer token (default: generated).",
    ),
    refresh_metrics_interval: str = typer.Option(
        "50ms", "--refresh-metrics-interval", envvar="REFRESH_METRICS_INTERVAL"
    ),
    metrics_staleness_threshold: str = typer.Option("2s", "--metrics-staleness-threshold"),
    config_file: Path | None = typer.Option(None, "--config-file", help="EndpointPickerConfig file."),
    scheduler: str = typer.Option(
        "default", "--scheduler", help="Built-in scheduler profile (without --config-file)."
    ),
    secure_serving: bool = typer.Option(
        True,
        "--secure-serving/--no-secure-serving",
        envvar="SECURE_SERVING",
        help="TLS on the ext_proc port (self-signed by default).",
    ),
    cert_path: Path | None = typer.Option(None, "--cert-path", help="Directory with tls.crt and tls.key."),
    client_ca: Path | None = typer.Option(
        None, "--client-ca", help="CA bundle (PEM): require client certificates it signed (mTLS)."
    ),
    fallback_endpoints: int = typer.Option(
        1,
        "--fallback-endpoints",
        min=1,
        help="Endpoints in x-gateway-destination-endpoint (ordered fallback list).",
    ),
    response_samples_per_second: float = typer.Option(
        DEFAULT_SAMPLES_PER_SECOND,
        "--response-samples-per-second",
        min=0,
        help="With Envoy's response body mode NONE: responses per second read in full for usage and "
        "first-token time (the rest cost no picker CPU per token); 0 reads none.",
    ),
    every_response_status: bool = typer.Option(
        False,
        "--every-response-status/--no-every-response-status",
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
        "--ha-enable-leader-election/--no-ha-enable-leader-election",
        help="Several replicas: hold a Lease; only the leader writes InferenceModel status.",
    ),
    route_namespaces: list[str] = typer.Option(
        [],
        "--route-namespace",
        help="Kubernetes mode: also watch the HTTPRoutes of this namespace (repeatable) for routes "
        "that send traffic to the pool from there, whose GuardPolicies and Gateways' then apply.",
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
    verbosity: int | None = upstream_option(
        None,
        "--v",
        help=f"Log verbosity: {UPSTREAM_DEBUG} or more (upstream's debug) logs at debug, overriding --log-level.",
    ),
    zap_encoder: str = upstream_option(
        "console",
        "--zap-encoder",
        help="Log lines: console (text) or json (one object a line with zap's keys level, ts, logger, "
        "msg; upstream's chart passes json).",
    ),
    tracing: bool = upstream_option(
        False,
        "--tracing/--no-tracing",
        help="Export spans to OTEL_EXPORTER_OTLP_ENDPOINT, which upstream's chart sets (sampled as "
        "OTEL_TRACES_SAMPLER says); false changes nothing: --otlp-traces-endpoint alone turns tracing on too.",
    ),
    config_text: str | None = upstream_option(
        None,
        "--config-text",
        help="An EndpointPickerConfig given inline, instead of --config-file.",
    ),
    model_server_metrics_path: str = upstream_option(
        "/metrics",
        "--model-server-metrics-path",
        envvar="MODEL_SERVER_METRICS_PATH",
        help="Path of the model servers' Prometheus page.",
    ),
    model_server_metrics_port: int = upstream_option(
        0,
        "--model-server-metrics-port",
        envvar="MODEL_SERVER_METRICS_PORT",
        min=0,
        max=65535,
        help="Port of the model servers' Prometheus page; 0: the pool's target port they serve on.",
    ),
    model_server_metrics_scheme: str = upstream_option(
        "http",
        "--model-server-metrics-scheme",
        envvar="MODEL_SERVER_METRICS_SCHEME",
        help="http, or https for model servers that serve TLS (their /v1/models too).",
    ),
    model_server_metrics_https_insecure_skip_verify: bool = upstream_option(
        True,
        "--model-server-metrics-https-insecure-skip-verify/--no-model-server-metrics-https-insecure-skip-verify",
        envvar="MODEL_SERVER_METRICS_HTTPS_INSECURE_SKIP_VERIFY",
        help="With https: do not check the model servers' certificates (upstream's default).",
    ),
    total_queued_requests_metric: str | None = upstream_option(
        None,
        "--total-queued-requests-metric",
        help="Series of the queue length, `name` or `name{label=value,...}` (default vLLM's, or the "
        "engine the pod's engine-type label names); with the three below, for pods of the default engine.",
    ),
    total_running_requests_metric: str | None = upstream_option(
        None,
        "--total-running-requests-metric",
        help="Series of the running requests.",
    ),
    kv_cache_usage_percentage_metric: str | None = upstream_option(
        None,
        "--kv-cache-usage-percentage-metric",
        help="Series of the KV-cache use, 0 to 1.",
    ),
    lora_info_metric: str | None = upstream_option(
        None,
        "--lora-info-metric",
        help="vLLM-style LoRA info series; empty turns LoRA scraping off (upstream's chart, for Triton).",
    ),
    cache_info_metric: str | None = upstream_option(
        None,
        "--cache-info-metric",
        help="Series whose block_size and num_gpu_blocks labels give the KV cache's size "
        "(vLLM's cache_config_info shape; upstream's chart names one for SGLang and trtllm-serve).",
    ),
    health_checking: bool = upstream_option(
        False,
        "--health-checking/--no-health-checking",
        help="grpc.health.v1 on the ext_proc port as well, with the health port's statuses.",
    ),
    destination_endpoint_hint_key: str = upstream_option(
        DESTINATION_HEADER,
        "--destination-endpoint-hint-key",
        envvar="DESTINATION_ENDPOINT_HINT_KEY",
        help="Accepted with upstream's default only: the header (and metadata key) the pick goes in is fixed.",
    ),
    destination_endpoint_hint_metadata_namespace: str = upstream_option(
        DESTINATION_NAMESPACE,
        "--destination-endpoint-hint-metadata-namespace",
        help="Accepted with upstream's default only: the pick's metadata namespace is fixed.",
    ),
    fairness_id_header_key: str = upstream_option(
        FAIRNESS_HEADER,
        "--fairness-id-header-key",
        help="Accepted with upstream's default only: the fairness header is fixed.",
    ),
    enable_pprof: bool = upstream_option(
        False,
        "--enable-pprof/--no-enable-pprof",
        help="Accepted, no effect: a Python process has no pprof (profile it with py-spy).",
    ),
    refresh_prometheus_metrics_interval: str = upstream_option(
        "5s",
        "--refresh-prometheus-metrics-interval",
        help="Accepted, no effect: the pool gauges are computed when /metrics is read, not flushed on a timer.",
    ),
) -> None:
    """Endpoint Picker for Envoy: ext_proc on 9002, gRPC health on 9003, metrics on 9090."""
    if not manifests and pool_name is None:
        raise typer.BadParameter("give -f PATH... or --pool-name")
    if pool_namespace is None:  # as upstream's EPP, from the pod's namespace; never for manifests
        pool_namespace = (None if manifests else os.environ.get("NAMESPACE")) or "default"
    if verbosity is not None and verbosity >= UPSTREAM_DEBUG:
        log_level = "debug"
    for flag, given, fixed in (
        ("--destination-endpoint-hint-key", destination_endpoint_hint_key, DESTINATION_HEADER),
        ("--destination-endpoint-hint-metadata-namespace", destination_endpoint_hint_metadata_namespace,
         DESTINATION_NAMESPACE),
        ("--fairness-id-header-key", fairness_id_header_key, FAIRNESS_HEADER),
    ):  # fmt: skip
        if given != fixed:
            raise typer.BadParameter(f"{given!r}: inferpool's is fixed, {fixed!r}", param_hint=flag)
    refresh_s = _duration(refresh_metrics_interval, "--refresh-metrics-interval")
    if refresh_s <= 0:  # every endpoint scraped back to back, a core spent on it (upstream: a panic)
        raise typer.BadParameter(
            f"{refresh_metrics_interval!r}: must be above 0", param_hint="--refresh-metrics-interval"
        )
    if log_level.upper() not in LOG_LEVELS:
        raise typer.BadParameter(
            f"{log_level!r}: use {', '.join(LOG_LEVELS).lower()}", param_hint="--log-level"
        )
    try:
        configure_logging(log_level, zap_encoder)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--zap-encoder") from None
    _duration(refresh_prometheus_metrics_interval, "--refresh-prometheus-metrics-interval")  # checked, unused
    if manifests and endpoints is None:
        # -f reads no pods: without an endpoints file the pool stays empty and every request fails
        log.warning("-f without --endpoints: no model server will be known (give --endpoints FILE)")
    if not metrics_endpoint_auth and metrics_token:
        # The explicit "off" wins over a token that may come from the environment (a Secret).
        log.warning(
            "--no-metrics-endpoint-auth: /metrics, the dashboard and /api/* are open; the metrics token given is not required"
        )
        metrics_token = None
    if tracing and otlp_traces_endpoint is None:
        otlp_traces_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if not otlp_traces_endpoint:
            raise typer.BadParameter(
                "set OTEL_EXPORTER_OTLP_ENDPOINT, or give --otlp-traces-endpoint", param_hint="--tracing"
            )
    if config_text is not None:
        if config_file is not None:
            raise typer.BadParameter(
                "give --config-file or --config-text, not both", param_hint="--config-text"
            )
        try:  # checked here, so a problem names the flag and not the temporary file it goes to
            build_scheduler(parse_config(config_text, "--config-text"), source="--config-text")
        except ConfigError as err:
            raise typer.BadParameter("; ".join(err.problems), param_hint="--config-text") from None
        config_file = _inline_config(config_text)
    if model_server_metrics_scheme not in ("http", "https"):
        raise typer.BadParameter(
            f"{model_server_metrics_scheme!r}: use http or https", param_hint="--model-server-metrics-scheme"
        )
    try:
        metric_map = flag_metric_map(
            total_queued_requests_metric,
            total_running_requests_metric,
            kv_cache_usage_percentage_metric,
            lora_info_metric,
            cache_info=cache_info_metric,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
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
            fallback_endpoints=fallback_endpoints,
            response_samples_per_second=response_samples_per_second,
            every_status=every_response_status,
            stream_threads=stream_threads,
            health_on_ext_proc=health_checking,
        ),
        metrics_host=host,
        metrics_port=metrics_port,
        metrics_auth=metrics_endpoint_auth,
        metrics_token=metrics_token,
        refresh_metrics_interval_s=refresh_s,
        metrics_staleness_threshold_s=_duration(metrics_staleness_threshold, "--metrics-staleness-threshold"),
        model_server_metrics_path=model_server_metrics_path,
        model_server_metrics_port=model_server_metrics_port or None,
        model_server_metrics_scheme=model_server_metrics_scheme,
        model_server_tls_verify=not model_server_metrics_https_insecure_skip_verify,
        metric_map=metric_map,
        config_file=config_file,
        scheduler=scheduler,
        kubeconfig=kubeconfig,
        leader_election=ha_enable_leader_election,
        route_namespaces=tuple(route_namespaces),
        workers=workers,
        otlp_traces_endpoint=otlp_traces_endpoint,
        fleet_speed=fleet_speed,
    )
    try:
        if workers > 1:
            _run_workers(config, log_level.upper(), zap_encoder)
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


def _inline_config(text: str) -> Path:
    """--config-text as a file (what the core and every worker process load), removed at exit."""
    fd, name = tempfile.mkstemp(prefix="inferpool-epp-config-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    atexit.register(os.unlink, name)
    return Path(name)


def _run_workers(config: EppConfig, log_level: str, log_format: str) -> None:
    """Supervise `--workers` processes until SIGINT/SIGTERM, then stop them all."""
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    supervisor = Supervisor(config, log_level, log_format)
    try:
        for line in supervisor.start():
            print(line, flush=True)
        supervisor.watch(stopping.is_set)
    finally:
        supervisor.stop()


epp.command_class = GoFlagsCommand  # type: ignore[attr-defined]  # cli.py: upstream's Go-style flags
