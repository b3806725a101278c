"""`inferpool up -f DIR` and `inferpool demo`: the guide's manifests running on this machine."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import typer

from inferpool.gateway.command import (
    OTLP_TRACES_ENDPOINT,
    listening_lines,
    run_async,
    say,
    traces_line,
    wait_for_signal,
)
from inferpool.local.stack import LocalStack, UpConfig
from inferpool.logformat import configure_logging

EXAMPLE = "gke-quickstart"
GUIDE_BODY = (
    '{"model": "food-review", "prompt": "What is the best pizza in the world?", '
    '"max_tokens": 2048, "temperature": "0"}'
)


# Options `up` and `demo` share (typer reads them as parameter defaults).
HOST = typer.Option("127.0.0.1", "--host", help="Address replicas and listeners bind to.")
SPEED = typer.Option(1.0, "--speed", help="Simulated time runs this many times faster.")
ADMIN_PORT = typer.Option(9090, "--admin-port", help="Metrics, health and state API port (0: free port).")
PROFILE = typer.Option(None, "--profile", help="Scheduler profile name or EndpointPickerConfig file.")
NO_ACCESS_LOG = typer.Option(False, "--no-access-log", help="Do not write JSON access-log lines.")
LOG_LEVEL = typer.Option("warning", "--log-level", help="debug, info, warning or error.")


def example_dir() -> Path:
    """examples/gke-quickstart of this checkout (the package is installed editable by `make`)."""
    override = os.environ.get("INFERPOOL_EXAMPLES")
    roots = [Path(override)] if override else []
    roots += [parent / "examples" for parent in Path(__file__).resolve().parents]
    roots.append(Path.cwd() / "examples")
    for root in roots:
        if (root / EXAMPLE).is_dir():
            return root / EXAMPLE
    raise FileNotFoundError(
        f"examples/{EXAMPLE} not found; run from the inferpool checkout or set INFERPOOL_EXAMPLES"
    )


def guide_curl(url: str) -> str:
    """The guide's own request, pointed at the local gateway."""
    target = url.removeprefix("http://") + "/v1/completions"
    return f"curl -i -X POST {target} -H 'Content-Type: application/json' -d {shlex.quote(GUIDE_BODY)}"


async def run_stack(config: UpConfig, demo: bool) -> None:
    stack = LocalStack(config)
    await stack.start()
    try:
        runtime = stack.runtime
        assert runtime is not None and runtime.gateway is not None
        for replica in stack.replicas:
            say(
                f"replica  http://{config.host}:{replica.port}  {replica.name} (simulated vLLM, speed x{config.speed:g})"
            )
        for line in listening_lines(runtime, stack.remapped):
            say(line)
        if not runtime.gateway.bound:
            say("gateway  none: the manifests have no Gateway listener; the replicas above answer directly")
        if stack.profile is not None and config.profile is None:
            say(
                f"profile  {stack.profile}  (prefill and decode pods, labelled llm-d.ai/role; see docs/pd.md)"
            )
        say("auth     OFF: local mode serves any caller (no --auth-keys); see docs/security.md")
        if config.otlp_traces_endpoint:
            say(traces_line(config.otlp_traces_endpoint))
        if demo and runtime.gateway.bound:
            say("try the guide's request:")
            say(f"  {guide_curl(runtime.gateway.bound[0].url)}")
        say("ready. Ctrl-C stops everything.")
        await wait_for_signal()
        say("stopping: draining in-flight requests")
    finally:
        await stack.stop()
        say("stopped")


def _config(
    paths: list[str],
    host: str,
    speed: float,
    admin_port: int,
    profile: str | None,
    quiet: bool,
    otlp_traces_endpoint: str | None,
) -> UpConfig:
    return UpConfig(
        paths=tuple(paths),
        host=host,
        speed=speed,
        admin_port=admin_port,
        profile=profile,
        access_log=not quiet,
        otlp_traces_endpoint=otlp_traces_endpoint,
    )


def _logging(level: str) -> None:
    configure_logging(level)


def up(
    filename: list[Path] = typer.Option(
        ..., "-f", "--filename", help="Manifest files or directories (repeatable)."
    ),
    host: str = HOST,
    speed: float = SPEED,
    admin_port: int = ADMIN_PORT,
    profile: str | None = PROFILE,
    no_access_log: bool = NO_ACCESS_LOG,
    log_level: str = LOG_LEVEL,
    otlp_traces_endpoint: str | None = OTLP_TRACES_ENDPOINT,
) -> None:
    """Run the manifests locally: vLLM Deployments as simulated replicas, the Gateway served built in."""
    _logging(log_level)
    config = _config(
        [str(p) for p in filename], host, speed, admin_port, profile, no_access_log, otlp_traces_endpoint
    )
    run_async(lambda: run_stack(config, demo=False), "up")


def demo(
    host: str = HOST,
    speed: float = SPEED,
    admin_port: int = ADMIN_PORT,
    profile: str | None = PROFILE,
    no_access_log: bool = NO_ACCESS_LOG,
    log_level: str = LOG_LEVEL,
    otlp_traces_endpoint: str | None = OTLP_TRACES_ENDPOINT,
) -> None:
    """The guide's example (examples/gke-quickstart): 3 simulated Llama-3.1-8B replicas behind the gateway."""
    _logging(log_level)
    try:
        path = example_dir()
    except FileNotFoundError as err:
        typer.echo(f"inferpool demo: {err}", err=True)
        raise typer.Exit(1) from err
    config = _config([str(path)], host, speed, admin_port, profile, no_access_log, otlp_traces_endpoint)
    run_async(lambda: run_stack(config, demo=True), "demo")
