"""`inferpool serve`: the built-in data plane in front of model servers that are not in Kubernetes."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import typer
import uvloop

from inferpool.admission import AdmissionConfig
from inferpool.gateway.auth import KeysFileError, KeyStore
from inferpool.gateway.config import ProxyConfig, ServeConfig
from inferpool.gateway.manifests import ManifestError
from inferpool.gateway.runtime import GatewayRuntime, RuntimeConfig
from inferpool.gateway.security import read_token
from inferpool.heap import GATEWAY_YOUNG_THRESHOLD, freeze_startup_heap
from inferpool.logformat import configure_logging
from inferpool.request.core import FLEET_SPEED_HELP
from inferpool.scheduling import ConfigError
from inferpool.sources.static import EndpointsFileError, StaticEndpoint, load_endpoints_file

STARTUP_ERRORS = (
    ManifestError,
    ConfigError,
    EndpointsFileError,
    KeysFileError,
    OSError,
    ValueError,
)


# vLLM's flag, so one collector address serves the gateway and the model servers alike.
OTLP_TRACES_ENDPOINT = typer.Option(
    None,
    "--otlp-traces-endpoint",
    help="Export OpenTelemetry spans over OTLP/gRPC to this collector (e.g. http://127.0.0.1:4317); "
    "off when not given. See docs/tracing.md.",
)


def say(line: str) -> None:
    print(line, flush=True, file=sys.stdout)


async def wait_for_signal() -> None:
    """Return on the first SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


ADMIN_PATHS = "/dashboard /metrics /healthz /readyz /api/state /api/decisions /api/dashboard /api/stream"


def listening_lines(runtime: GatewayRuntime, remapped: dict[int, int] | None = None) -> list[str]:
    """Where the gateway's listeners and admin port answer; `remapped`: listener ports the
    local stack moved (it binds no port below 1024)."""
    assert runtime.gateway is not None
    lines = []
    for bound in runtime.gateway.bound:
        lis = bound.listener
        note = ""
        if remapped and lis.port in remapped:
            note = f" (listener port {lis.port} remapped to {bound.port}: the local stack binds no port below 1024)"
        lines.append(f"gateway  {bound.url}  Gateway {lis.gateway} listener {lis.name}{note}")
    if runtime.gateway.admin_url:
        lines.append(f"admin    {runtime.gateway.admin_url}  ({ADMIN_PATHS})")
    return lines


def announce(runtime: GatewayRuntime) -> None:
    """Print where the gateway listens, once it does."""
    assert runtime.gateway is not None
    for line in listening_lines(runtime):
        say(line)
    say(auth_line(runtime.gateway.proxy.tenancy.keys, runtime.gateway.config))
    if runtime.gateway.config.otlp_traces_endpoint:
        say(traces_line(runtime.gateway.config.otlp_traces_endpoint))


def traces_line(endpoint: str) -> str:
    return f"traces   OTLP/gRPC to {endpoint} (docs/tracing.md)"


def auth_line(keys: KeyStore | None, config: ServeConfig) -> str:
    """The startup line that says whether callers need a key (and that auth is off when it is)."""
    metrics = (
        "; /metrics, /dashboard and /api/* need the metrics-reader token" if config.metrics_token else ""
    )
    if keys is None:
        return f"auth     OFF: any caller may use the gateway (--no-auth){metrics}"
    return f"auth     API keys from {config.auth_keys} ({len(keys)} keys; Authorization: Bearer KEY){metrics}"


def run_async(main: Callable[[], Coroutine[Any, Any, None]], what: str) -> None:
    """Run `main` on uvloop; startup problems become one readable message and exit code 1."""
    try:
        uvloop.run(main())
    except STARTUP_ERRORS as err:
        typer.echo(f"inferpool {what}: {err}", err=True)
        raise typer.Exit(1) from err


def serve(
    filename: list[Path] = typer.Option(
        ..., "-f", "--filename", help="Manifest files or directories (repeatable)."
    ),
    endpoints: Path | None = typer.Option(
        None,
        "--endpoints",
        help="YAML list of model servers (address, port, labels); pools select them by label.",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address the Gateway listeners bind to."),
    admin_host: str = typer.Option("127.0.0.1", "--admin-host", help="Address of the admin port."),
    admin_port: int = typer.Option(
        9090, "--admin-port", help="Metrics, health and state API port (0: free port)."
    ),
    profile: str | None = typer.Option(
        None, "--profile", help="Scheduler: a built-in profile name or an EndpointPickerConfig file."
    ),
    max_retries: int = typer.Option(2, "--max-retries", help="Extra tries after a connect error or 5xx."),
    max_body_bytes: int = typer.Option(16 * 1024 * 1024, "--max-body-bytes", help="Larger bodies get 413."),
    no_access_log: bool = typer.Option(False, "--no-access-log", help="Do not write JSON access-log lines."),
    no_admission: bool = typer.Option(False, "--no-admission", help="Never shed requests (benchmarks)."),
    log_level: str = typer.Option("warning", "--log-level", help="debug, info, warning or error."),
    auth_keys: Path | None = typer.Option(
        None, "--auth-keys", help="API keys file (`inferpool keys add`); requests need a Bearer key."
    ),
    no_auth: bool = typer.Option(
        False, "--no-auth", help="Serve without API keys (must be said explicitly)."
    ),
    metrics_token: str | None = typer.Option(
        None, "--metrics-token", help="Bearer token /metrics requires (@FILE reads it from a file)."
    ),
    drain_timeout: float = typer.Option(
        30.0, "--drain-timeout", help="Seconds SIGTERM waits for in-flight requests before exiting."
    ),
    otlp_traces_endpoint: str | None = OTLP_TRACES_ENDPOINT,
    fleet_speed: float = typer.Option(1.0, "--fleet-speed", min=1e-6, help=FLEET_SPEED_HELP),
) -> None:
    """Serve the Gateway listeners of the manifests, routing to the model servers in --endpoints."""
    configure_logging(log_level)
    if (auth_keys is None) == (not no_auth):
        typer.echo(
            "inferpool serve: give either --auth-keys FILE or --no-auth (auth is never off by default)",
            err=True,
        )
        raise typer.Exit(2)
    token = read_token(metrics_token) if metrics_token else None

    async def main() -> None:
        static: list[StaticEndpoint] = load_endpoints_file(endpoints) if endpoints else []
        config = RuntimeConfig(
            serve=ServeConfig(
                host=host,
                admin_host=admin_host,
                admin_port=admin_port,
                proxy=ProxyConfig(
                    max_retries=max_retries, max_body_bytes=max_body_bytes, drain_timeout_s=drain_timeout
                ),
                auth_keys=str(auth_keys) if auth_keys else None,
                metrics_token=token,
                otlp_traces_endpoint=otlp_traces_endpoint,
            ),
            profile=profile,
            access_log=not no_access_log,
            admission=AdmissionConfig(enabled=not no_admission),
            fleet_speed=fleet_speed,
        )
        runtime = GatewayRuntime([str(p) for p in filename], config, static)
        await runtime.start()
        freeze_startup_heap(GATEWAY_YOUNG_THRESHOLD)
        try:
            announce(runtime)
            await wait_for_signal()
            say("stopping: draining in-flight requests")
        finally:
            await runtime.stop()

    run_async(main, "serve")
