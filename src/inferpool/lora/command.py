"""`inferpool lora-syncer`: the guide's lora-adapter-syncer sidecar, as a command."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import typer

from inferpool.api.lora_config import LoRAConfigError, load_lora_config
from inferpool.lora.backoff import BackoffPolicy
from inferpool.lora.server import serve_status
from inferpool.lora.syncer import LoRASyncer, SyncerOptions

CONFIG_ENV = "DYNAMIC_LORA_ROLLOUT_CONFIG"


def lora_syncer(
    config: Path | None = typer.Option(
        None, "--config", "-c", help=f"vLLMLoRAConfig file (default: ${CONFIG_ENV}).", show_default=False
    ),
    server: str | None = typer.Option(
        None, "--server", help="Model server base URL; overrides the config's host and port."
    ),
    metrics_host: str = typer.Option(
        "127.0.0.1", help="Address for /metrics and /healthz (0.0.0.0 in a pod)."
    ),
    metrics_port: int = typer.Option(9093, help="Port for /metrics and /healthz (0 picks a free one)."),
    resync_interval: float = typer.Option(5.0, help="Seconds between full reconciles."),
    watch_interval: float = typer.Option(0.5, help="Seconds between checks of the config file."),
    backoff_base: float = typer.Option(0.5, help="First retry delay of a failed load/unload, seconds."),
    backoff_max: float = typer.Option(30.0, help="Longest retry delay, seconds."),
    log_level: str = typer.Option("info", help="debug, info, warning or error."),
) -> None:
    """Keep a vLLM server's LoRA adapters matching a vLLMLoRAConfig file (reloaded when it changes)."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    path = config or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    if path is None:
        raise typer.BadParameter(f"give --config or set {CONFIG_ENV}", param_hint="--config")
    try:
        cfg = load_lora_config(path)
    except LoRAConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    options = SyncerOptions(
        base_url=server,
        resync_interval_s=resync_interval,
        watch_interval_s=watch_interval,
        backoff=BackoffPolicy(base_s=backoff_base, cap_s=backoff_max),
    )
    asyncio.run(_run(LoRASyncer(cfg, config_path=path, options=options), metrics_host, metrics_port))


async def _run(syncer: LoRASyncer, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner, bound = await serve_status(syncer, host, port)
    await syncer.start()
    typer.echo(
        f"lora-syncer: reconciling {syncer.base_url}; metrics on http://{host}:{bound}/metrics", err=True
    )
    try:
        await stop.wait()
    finally:
        await syncer.stop()
        await runner.cleanup()
