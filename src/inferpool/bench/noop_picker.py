"""The floor for an ext_proc picker in Python: a grpc.aio server that answers each message with a
fixed pick and does nothing else.

Envoy runs it with the request body BUFFERED and the response body NONE, so one request costs
three messages: request headers (continue), the buffered body (answered with the destination
header, route cache cleared) and response headers (continue). With `--skip-response-headers`
its answer to the request headers tells Envoy to send no response headers: two messages, as
`inferpool epp` costs for a request whose answer it does not sample. Whatever `inferpool epp` spends
above this is the picker's own work. Destinations are taken in turn, so two backends share
the load as they do behind the other contenders.

    python -m inferpool.bench.noop_picker --port 9002 --destination 127.0.0.1:8000 [--destination ...] [--work-us N]

`--work-us N` burns N µs of CPU per request before the pick (as `bare_proxy --work-us` does for
the gateway): the floor read at a real picker's throughput. `--threaded` serves on grpc's
threaded server, as `inferpool epp` does by default, instead of grpc.aio. Its threads run under
the CPU policy `inferpool epp` runs under (`--cpu-policy`, default batch), so the floor and the
picker share a core with Envoy on the same terms.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
from collections.abc import AsyncIterator, Iterator

import grpc
import uvloop
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from inferpool.bench.bare_proxy import burn_cpu
from inferpool.extproc.cpu_policy import POLICIES, apply_cpu_policy
from inferpool.extproc.protocol import continue_without_answer

DESTINATION_HEADER = "x-gateway-destination-endpoint"
EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"


def pick_answer(destination: str) -> pb.ProcessingResponse:
    """The buffered body's answer: set the destination header and re-run route selection."""
    header = base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=DESTINATION_HEADER, raw_value=destination.encode()),
        append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
    )
    common = pb.CommonResponse(
        header_mutation=pb.HeaderMutation(set_headers=[header]), clear_route_cache=True
    )
    return pb.ProcessingResponse(request_body=pb.BodyResponse(response=common))


CONTINUE = {
    "request_headers": pb.ProcessingResponse(request_headers=pb.HeadersResponse()),
    "response_headers": pb.ProcessingResponse(response_headers=pb.HeadersResponse()),
    "response_body": pb.ProcessingResponse(response_body=pb.BodyResponse()),
    "request_trailers": pb.ProcessingResponse(request_trailers=pb.TrailersResponse()),
    "response_trailers": pb.ProcessingResponse(response_trailers=pb.TrailersResponse()),
}


class NoopPicker(pb_grpc.ExternalProcessorServicer):
    """Answers are built once; each stream only looks at which message arrived."""

    def __init__(
        self, destinations: list[str], work_us: int = 0, skip_response_headers: bool = False
    ) -> None:
        self._picks = itertools.cycle([pick_answer(d) for d in destinations])
        self._work_s = work_us / 1e6
        # The same override `inferpool epp` sends for an unsampled request (body BUFFERED here).
        skip = continue_without_answer(processing_mode_pb2.ProcessingMode.BUFFERED)
        self._answers = {**CONTINUE, "request_headers": skip} if skip_response_headers else CONTINUE

    def answer(self, message: pb.ProcessingRequest) -> pb.ProcessingResponse | None:
        kind = message.WhichOneof("request")
        if kind == "request_body":
            if self._work_s:
                burn_cpu(self._work_s)  # a stand-in for a picker's own work per request
            return next(self._picks)
        return self._answers.get(kind or "")

    async def Process(
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ProcessingResponse]:
        async for message in request_iterator:
            if (answer := self.answer(message)) is not None:
                yield answer


class ThreadedNoopPicker(pb_grpc.ExternalProcessorServicer):
    """The same answers on grpc's threaded server: each stream holds a thread."""

    def __init__(self, picker: NoopPicker) -> None:
        self._picker = picker

    def Process(
        self, request_iterator: Iterator[pb.ProcessingRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ProcessingResponse]:
        for message in request_iterator:
            if (answer := self._picker.answer(message)) is not None:
                yield answer


def serve_threaded(
    host: str, port: int, destinations: list[str], work_us: int = 0, skip_response_headers: bool = False
) -> None:
    threads = concurrent.futures.ThreadPoolExecutor(1024, thread_name_prefix="ext-proc")
    server = grpc.server(threads, maximum_concurrent_rpcs=1024)
    picker = ThreadedNoopPicker(NoopPicker(destinations, work_us, skip_response_headers))
    pb_grpc.add_ExternalProcessorServicer_to_server(picker, server)
    checks = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    checks.set(EXT_PROC_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    print(f"no-op picker on {host}:{bound} (gRPC, plaintext, threaded)", flush=True)
    server.wait_for_termination()


async def serve(
    host: str, port: int, destinations: list[str], work_us: int = 0, skip_response_headers: bool = False
) -> None:
    server = grpc.aio.server()
    picker = NoopPicker(destinations, work_us, skip_response_headers)
    pb_grpc.add_ExternalProcessorServicer_to_server(picker, server)
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    await checks.set(EXT_PROC_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    print(f"no-op picker on {host}:{bound} (gRPC, plaintext)", flush=True)
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--destination", action="append", required=True, help="ip:port, repeatable")
    parser.add_argument("--work-us", type=int, default=0, help="µs of CPU burned per request (default 0)")
    parser.add_argument(
        "--skip-response-headers", action="store_true", help="ask Envoy for no response headers"
    )
    parser.add_argument("--threaded", action="store_true", help="grpc's threaded server, not grpc.aio")
    parser.add_argument("--cpu-policy", choices=POLICIES, default="batch", help="as inferpool epp's")
    args = parser.parse_args()
    apply_cpu_policy(args.cpu_policy)
    if args.threaded:
        serve_threaded(args.host, args.port, args.destination, args.work_us, args.skip_response_headers)
        return
    try:
        uvloop.run(
            serve(args.host, args.port, args.destination, args.work_us, args.skip_response_headers)
        )  # the same loop `inferpool epp` runs
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
