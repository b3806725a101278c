"""What open ext_proc streams cost `inferpool epp` in memory and threads, for docs/epp.md.

Starts two instant backends and `inferpool epp` (plaintext, `--response-samples-per-second 0`,
so no answer is read: each stream is what an unsampled request in flight holds), then opens
streams straight from a grpc.aio client, each with its request headers and body answered (the
pick made), and holds them open as Envoy does while the answer streams. Prints the picker's RSS
and thread count at each step, and again once all streams have ended.

    python bench/epp_open_streams.py --steps 0,1000,4000 [--stream-threads 0]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import grpc
import orjson
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from inferpool.bench.compare import FleetPorts, write_manifests
from inferpool.bench.overhead import Options, epp_argv, start_backends
from inferpool.bench.procs import Child, distinct_free_ports, grpc_serving, spawn, wait_until_ready

MODE = processing_mode_pb2.ProcessingMode


def status(pid: int) -> tuple[float, int]:
    """RSS in MiB and the number of threads of process `pid`."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def headers(model: str) -> pb.ProcessingRequest:
    values = {":method": "POST", ":path": "/v1/completions", "content-type": "application/json"}
    message = pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(
            headers=base_pb2.HeaderMap(
                headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in values.items()]
            )
        )
    )
    message.protocol_config.request_body_mode = MODE.BUFFERED
    message.protocol_config.response_body_mode = MODE.NONE
    return message


async def open_stream(stub: pb_grpc.ExternalProcessorStub, model: str) -> grpc.aio.StreamStreamCall:
    call = stub.Process()
    await call.write(headers(model))
    await call.read()
    body = orjson.dumps({"model": model, "prompt": "hello " * 100, "max_tokens": 16})
    await call.write(pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=True)))
    answer = await call.read()
    if answer.WhichOneof("response") != "request_body":
        raise RuntimeError(f"no pick: {answer}")
    return call


async def measure(pid: int, port: int, model: str, steps: list[int]) -> None:
    calls: list[grpc.aio.StreamStreamCall] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.ExternalProcessorStub(channel)
        for step in steps:
            while len(calls) < step:
                batch = min(200, step - len(calls))
                calls += await asyncio.gather(*(open_stream(stub, model) for _ in range(batch)))
            await asyncio.sleep(1.0)
            rss, threads = status(pid)
            print(f"{len(calls):>6} open streams: RSS {rss:7.1f} MiB, {threads} threads", flush=True)
        for call in calls:
            await call.done_writing()
        await asyncio.gather(*(call.code() for call in calls))
        await asyncio.sleep(2.0)
        rss, threads = status(pid)
        print(f"     0 open streams (all ended): RSS {rss:7.1f} MiB, {threads} threads", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", default="0,1000,4000", help="open streams at each reading")
    parser.add_argument("--stream-threads", type=int, default=None, help="passed to inferpool epp")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    with tempfile.TemporaryDirectory(prefix="inferpool-streams-") as tmp:
        work = Path(tmp)
        opts = Options([], frozenset({0}), frozenset({1}), work)
        model = work / "model"
        model.mkdir()
        children: list[Child] = []
        try:
            backends, _ = start_backends(opts, str(model), "streams", children)
            grpc_port, health_port, metrics_port, listener = distinct_free_ports(4)
            manifests, endpoints = write_manifests(
                work, FleetPorts(backends), listener
            )  # a listener nothing uses
            argv = [*epp_argv(manifests, endpoints, grpc_port, health_port, metrics_port),
                    "--response-samples-per-second", "0"]  # fmt: skip
            if args.stream_threads is not None:
                argv += ["--stream-threads", str(args.stream_threads)]
            picker = spawn("picker", argv, work / "logs")
            children.append(picker)
            wait_until_ready(
                picker,
                lambda: grpc_serving(health_port, "envoy.service.ext_proc.v3.ExternalProcessor"),
                lambda: f"gRPC health :{health_port}",
                120,
            )
            asyncio.run(measure(picker.proc.pid, grpc_port, str(model), steps))
        finally:
            for child in reversed(children):
                child.stop(10)


if __name__ == "__main__":
    sys.exit(main())
