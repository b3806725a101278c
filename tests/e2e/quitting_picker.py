"""An ext_proc server that ends every stream cleanly before it picks, for what `inferpool epp` never does.

Envoy 1.40 takes a clean end of the ext_proc stream (gRPC status OK) as "the processor is done
with this request", whatever `failure_mode_allow` says: the request goes on without a
destination header, and its body goes on as the client sent it. The FailClose tests use this
server to check that such a request is answered by Envoy and never reaches a replica.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc


class QuittingPicker(pb_grpc.ExternalProcessorServicer):
    """Plaintext gRPC on a port the kernel picks; `streams` counts the streams it ended."""

    def __init__(self) -> None:
        self.streams = 0
        self.port = 0
        self._server = grpc.aio.server()

    async def start(self) -> None:
        pb_grpc.add_ExternalProcessorServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(0)

    async def Process(
        self, request_iterator: AsyncIterator[pb.ProcessingRequest], context: grpc.aio.ServicerContext
    ) -> None:
        await context.read()  # the request headers
        self.streams += 1
        # returning ends the stream with status OK and no answer: Envoy goes on without a pick
