"""`inferpool sim`: simulated vLLM replicas on consecutive ports, in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import typer
import zmq

from inferpool.sim.config import SimConfig
from inferpool.sim.kvevents import KVEventsConfig
from inferpool.sim.nixl import DEFAULT_INTERCONNECT, INTERCONNECTS, KVTransferConfig
from inferpool.sim.profile import load_profile
from inferpool.sim.replica import SimFleet


def sim_command(
    port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="Port of the first replica; the others follow (0: free ports)."),
    ] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    replicas: Annotated[int, typer.Option(min=1, help="Number of replicas.")] = 1,
    data_parallel_size: Annotated[
        int,
        typer.Option(
            min=1,
            max=8,
            help="Data-parallel ranks per replica (vLLM --data-parallel-size), each its own API server on the "
            "next port (vLLM's external-LB layout, one InferencePool targetPort per rank); rank r labels its "
            'metrics engine="r". At most 8, as an InferencePool has at most 8 targetPorts.',
        ),
    ] = 1,
    model: Annotated[
        str, typer.Option(help="Base model (vLLM --model).")
    ] = "meta-llama/Llama-3.1-8B-Instruct",
    served_model_name: Annotated[
        str | None, typer.Option(help="Name clients use for the base model.")
    ] = None,
    lora: Annotated[
        list[str] | None, typer.Option(help="Adapter NAME or NAME=PATH loaded at start (repeat).")
    ] = None,
    max_loras: Annotated[int, typer.Option(min=1, help="Distinct adapters in one batch.")] = 1,
    max_cpu_loras: Annotated[int | None, typer.Option(help="Adapters kept in the CPU cache.")] = None,
    profile: Annotated[str, typer.Option(help="Hardware profile name or YAML path.")] = "llama-3.1-8b-h100",
    speed: Annotated[float, typer.Option(help="Run the clock K times faster than real time.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for output lengths and text.")] = 0,
    fail_rate: Annotated[float, typer.Option(help="Fraction of inference requests answered 500.")] = 0.0,
    startup_delay: Annotated[float, typer.Option(help="Seconds before /health turns 200.")] = 0.0,
    lora_info_semantics: Annotated[
        str, typer.Option(help="vllm:lora_requests_info labels: recent (vLLM ≥0.10) or legacy.")
    ] = "recent",
    kv_events_config: Annotated[
        str | None,
        typer.Option(
            help="vLLM's KV-cache events JSON, as `vllm serve --kv-events-config` takes it, e.g. "
            '{"enable_kv_cache_events": true, "endpoint": "tcp://*:5557"}. Replica i publishes on the '
            "endpoint's port + i (and replays on replay_endpoint's port + i); tcp://* binds on --host."
        ),
    ] = None,
    kv_transfer_config: Annotated[
        str | None,
        typer.Option(
            help="vLLM's KV transfer JSON, as `vllm serve --kv-transfer-config` takes it, e.g. "
            '{"kv_connector":"NixlConnector","kv_role":"kv_both"}: the replicas take part in P/D '
            "disaggregation (prefill for remote decode, pull a remote prefill's KV). Only NixlConnector."
        ),
    ] = None,
    kv_interconnect: Annotated[
        str,
        typer.Option(
            help="Sim only: the modelled KV transfer path between replicas: "
            + ", ".join(f"{ic.name} ({ic.gbytes_per_s:g} GB/s)" for ic in INTERCONNECTS.values())
            + "."
        ),
    ] = DEFAULT_INTERCONNECT,
) -> None:
    """Start simulated vLLM replicas that behave like vLLM on one GPU each."""
    try:
        kv_events = KVEventsConfig.from_json(kv_events_config) if kv_events_config else None
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--kv-events-config") from None
    try:
        kv_transfer = KVTransferConfig.from_json(kv_transfer_config) if kv_transfer_config else None
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--kv-transfer-config") from None
    if kv_interconnect not in INTERCONNECTS:
        raise typer.BadParameter(f"{kv_interconnect!r}: use one of {', '.join(INTERCONNECTS)}",
                                 param_hint="--kv-interconnect")  # fmt: skip
    last_port = port + replicas * (data_parallel_size or 1) - 1
    if port and last_port > 65535:
        raise typer.BadParameter(
            f"{port}: the replicas' ports would run to {last_port}, past 65535", param_hint="--port"
        )
    try:
        load_profile(profile)  # a wrong name or file is a usage error, not a traceback per replica
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--profile") from None
    try:
        configs = [
            SimConfig(
                model=model,
                served_model_name=served_model_name,
                host=host,
                port=port + i if port else 0,  # 0: each replica a free port of its own
                lora_modules=list(lora or []),
                data_parallel_rank=i % data_parallel_size,
                max_loras=max_loras,
                max_cpu_loras=max_cpu_loras,
                profile=profile,
                speed=speed,
                seed=seed + i,
                fail_rate=fail_rate,
                startup_delay_s=startup_delay,
                lora_info_semantics=lora_info_semantics,
                kv_events=kv_events.for_replica(i) if kv_events else None,
                kv_transfer=kv_transfer.for_replica(i, replicas) if kv_transfer else None,
                kv_interconnect=kv_interconnect,
            )
            for i in range(replicas * data_parallel_size)  # replica i // size, rank i % size
        ]
    except ValueError as err:  # SimConfig's own checks: speed > 0, fail rate within [0, 1], ...
        raise typer.BadParameter(str(err)) from None
    import uvloop

    try:
        uvloop.run(_serve(configs))
    except (OSError, zmq.ZMQError) as err:  # a port in use: say so, no traceback
        typer.echo(f"inferpool sim: cannot listen: {err}", err=True)
        raise typer.Exit(1) from None


async def _serve(configs: list[SimConfig]) -> None:
    fleet = SimFleet(configs)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await fleet.start()
    try:
        waits = [asyncio.create_task(_announce(r)) for r in fleet.replicas]
        await stop.wait()
        for w in waits:
            w.cancel()
    finally:
        await fleet.stop()
        print("inferpool sim: stopped", flush=True)


async def _announce(replica: object) -> None:
    from inferpool.sim.replica import SimReplica

    assert isinstance(replica, SimReplica)
    await replica.wait_ready()
    cfg = replica.config
    loras = ",".join(replica.state.loras) or "-"
    events = f" kv-events={replica.kv_events.endpoint}" if replica.kv_events is not None else ""
    if replica.kv_connector is not None:
        kv = cfg.kv_transfer
        assert kv is not None
        events += f" kv-transfer={kv.kv_connector}/{kv.kv_role} engine-id={replica.kv_connector.engine_id}"
    print(f"inferpool sim: replica ready at {replica.url} model={cfg.model_name} loras={loras} "
          f"profile={cfg.profile} speed={cfg.speed}{events}", flush=True)  # fmt: skip
