"""The floor for the built-in gateway: an aiohttp reverse proxy with no routing logic at all.

Round robin over the backends, the body read whole and sent on, the answer relayed chunk by
chunk as it arrives. The client session, server (aiohttp's low-level one) and event loop are set
up as `inferpool serve` sets up its own (uvloop, one pooled session, no auto headers, no access log),
so the difference to the gateway is the gateway's work, not aiohttp's. It sends upstream through
aiohttp's public client call, `ClientSession.request`, as a plain aiohttp proxy would; `serve`'s
leaner send on the same pool (gateway/upstream.py) is counted as the gateway's own work.

    python -m inferpool.bench.bare_proxy --port 8080 --backend 127.0.0.1:8000 [--backend ...] [--work-us N]

`--work-us N` burns N µs of CPU (thread time) in each request's handler before proxying it: a
stand-in for a gateway's own work, so the floor can be read at the gateway's throughput. A
proxy that serves fewer requests a second pays more of aiohttp's and the kernel's cost per
request (fewer events per loop wake-up), so comparing CPU per request at different
throughputs mixes that in.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import Mapping

import aiohttp
import uvloop
from aiohttp import web
from multidict import CIMultiDict

HOP_BY_HOP = frozenset(
    ("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "content-length")
)  # fmt: skip


def end_to_end(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """The headers a proxy passes on (RFC 9110 §7.6.1); lengths and framing are the sender's own."""
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)


class BareProxy:
    def __init__(self, backends: list[str], work_us: int = 0) -> None:
        self._backends = itertools.cycle(backends)
        self._session: aiohttp.ClientSession | None = None
        self._work_s = work_us / 1e6

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0, enable_cleanup_closed=True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, connect=5.0),
            skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        assert self._session is not None, "BareProxy.start() was not awaited"
        if self._work_s:
            burn_cpu(self._work_s)
        body = await request.content.read()  # the whole body (the low-level server sets no size cap)
        url = f"http://{next(self._backends)}{request.path_qs}"
        try:
            upstream = await self._session.request(
                request.method, url, headers=end_to_end(request.headers), data=body, allow_redirects=False
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = {"message": f"upstream failed: {type(exc).__name__}", "type": "BadGateway", "code": 502}
            return web.json_response({"error": error}, status=502)
        try:
            response = web.StreamResponse(
                status=upstream.status, reason=upstream.reason, headers=end_to_end(upstream.headers)
            )
            if upstream.content_length is not None and "content-encoding" not in upstream.headers:
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            # as the gateway does: a half-read answer closes its connection instead of pooling it
            if upstream.content.at_eof():
                upstream.release()
            else:
                upstream.close()


def burn_cpu(seconds: float) -> None:
    """Spin until this thread has used `seconds` of CPU (thread time: preemption is not counted)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


async def serve(host: str, port: int, backends: list[str], work_us: int = 0) -> None:
    proxy = BareProxy(backends, work_us)
    await proxy.start()
    # aiohttp's low-level server, as `inferpool serve`'s listeners: one handler, no router
    server = web.Server(proxy.handle, handler_cancellation=True, access_log=None)
    runner = web.ServerRunner(server, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port, reuse_address=True).start()
    print(f"bare proxy on http://{host}:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await proxy.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", action="append", required=True, help="host:port, repeatable")
    parser.add_argument("--work-us", type=int, default=0, help="µs of CPU burned per request (default 0)")
    args = parser.parse_args()
    try:
        uvloop.run(serve(args.host, args.port, args.backend, args.work_us))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
