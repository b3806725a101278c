"""`inferpool pd-sidecar`: the reverse proxy beside a decode server, in llm-d's P/D split.

Behind Envoy, `inferpool epp` only picks: for a disaggregated request it names the prefill
endpoint in `x-prefiller-host-port` and sends the request to the decode pod. This proxy sits
on the port the InferencePool targets (8000), in front of the decode vLLM on localhost (8200),
and runs vLLM's disaggregated protocol (NixlConnector, llm-d's "nixlv2" connector), as
llm-d's routing sidecar does:

1. the prefill leg to the named endpoint (gateway/prefill.py, the same code `serve` uses);
2. the decode leg, the client's request plus the prefill's `kv_transfer_params`, to the
   local decoder, whose answer streams back to the client unbuffered. Usage is the
   decoder's alone: the prefill leg's answer never reaches the client.

A prefill that fails is no failure for the client: the decoder gets the client's body
unchanged and prefills locally. The sidecar tells the picker how the leg went in the
response header `x-inferpool-prefill` (PREFILL_REPORT_HEADER), which the picker records and
strips. Without the request header the request passes through to the decoder untouched.

Security (SSRF): the prefill target must be a member of the pool, as llm-d's allowlist
(pkg/sidecar/proxy/allowlist.go) checks it: by host (pod IP or pod name), whatever the port.
A request naming any other host is refused with 403, as llm-d refuses it, never forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import typer
import uvloop
from aiohttp import web
from yarl import URL

from inferpool.errors import InferenceError
from inferpool.gateway.headers import end_to_end
from inferpool.gateway.prefill import (
    PREFILL_REPORT_HEADER,
    PrefillOutcome,
    format_prefill_report,
    run_prefill,
)
from inferpool.gateway.upstream import send
from inferpool.gateway.upstream import session as upstream_session
from inferpool.logformat import configure_logging
from inferpool.request.disagg import PREFILLER_HEADER, decode_request
from inferpool.request.pd_usage import CachedTokensRewriter
from inferpool.sources.manifest import ManifestSource
from inferpool.sources.static import StaticSource, load_endpoints_file
from inferpool.state import Datastore

log = logging.getLogger(__name__)

DECODER_CONNECT_TIMEOUT_S = 10.0
_DECODE_LIMITS = aiohttp.ClientTimeout(total=None, connect=DECODER_CONNECT_TIMEOUT_S, sock_read=None)

# The connectors this sidecar speaks (llm-d's --kv-connector names). Only vLLM's NixlConnector.
CONNECTORS = ("nixlv2",)
# Paths that carry a generation request vLLM can split (llm-d's sidecar handles these two too);
# every other path passes through to the decoder.
PD_PATHS = frozenset({"/v1/completions", "/v1/chat/completions"})


def split_host(target: str) -> tuple[str, int | None]:
    """(host, port) of `host`, `host:port`, `[v6]` or `[v6]:port`; the port None when absent."""
    target = target.strip()
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else None
    if target.count(":") == 1:
        host, _, port = target.partition(":")
        return host, int(port) if port.isdigit() else None
    return target, None  # a bare host, or a bare IPv6 address


class Allowlist:
    """Which prefill targets the sidecar may send a prefill leg to.

    Static entries (`--allow host` or `host:port`) and the members of a pool (endpoints a
    `Datastore` holds: the pods' IPs and names, any port, as llm-d's allowlist matches them).
    """

    def __init__(
        self,
        static: Iterable[str] = (),
        datastore: Datastore | None = None,
        pool: Callable[[], str | None] | None = None,
    ) -> None:
        self._hosts: set[str] = set()  # any port
        self._hostports: set[tuple[str, int]] = set()
        for entry in static:
            host, port = split_host(entry)
            if not host:
                raise ValueError(f"--allow {entry!r}: no host")
            if port is None:
                self._hosts.add(host.lower())
            else:
                self._hostports.add((host.lower(), port))
        self._datastore = datastore
        self._pool = pool  # the pool whose members are allowed; None: every pool in the datastore

    def allows(self, target: str) -> bool:
        host, port = split_host(target)
        if not host:
            return False
        host = host.lower()
        if host in self._hosts or (port is not None and (host, port) in self._hostports):
            return True
        if self._datastore is None:
            return False
        pool = self._pool() if self._pool is not None else None
        if self._pool is not None and pool is None:
            return False  # the pool is not known (yet): nothing is a member
        members = self._datastore.endpoints(pool) if pool else self._datastore.all_endpoints()
        return any(e.address.lower() == host or e.name.lower() == host for e in members)

    def describe(self) -> str:
        parts = sorted(self._hosts) + sorted(f"{h}:{p}" for h, p in self._hostports)
        if self._datastore is not None:
            parts.append("the pool's members")
        return ", ".join(parts) or "nothing"


@dataclass
class SidecarConfig:
    """Flags of `inferpool pd-sidecar`, named after llm-d's routing sidecar's where they exist."""

    host: str = "0.0.0.0"
    port: int = 8000  # where the InferencePool's targetPort points
    decoder_host: str = "127.0.0.1"
    decoder_port: int = 8200  # --vllm-port: the decode vLLM beside this proxy
    connector: str = "nixlv2"
    allow: list[str] = field(default_factory=list)  # static prefill targets
    manifests: list[Path] = field(default_factory=list)  # -f: the pool from files
    endpoints_file: Path | None = None  # --endpoints: the pool's members from a static file
    pool_name: str | None = None
    pool_namespace: str = "default"
    pool_group: str = "inference.networking.k8s.io"
    kubeconfig: str | None = None
    prefill_timeout_s: float | None = 120.0
    sync_timeout_s: float = 60.0

    @property
    def kubernetes_mode(self) -> bool:
        return self.pool_name is not None and not self.manifests

    def check(self) -> None:
        if self.connector not in CONNECTORS:
            raise ValueError(f"--kv-connector {self.connector!r}: supported: {', '.join(CONNECTORS)}")
        if not (self.allow or self.manifests or self.pool_name):
            raise ValueError(
                "no prefill target would be allowed: give --allow HOST[:PORT], -f PATH or --pool-name"
            )
        if self.endpoints_file is not None and not self.manifests:
            raise ValueError("--endpoints needs -f PATH with the InferencePool they belong to")


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=InferenceError(status, message).to_json(),
        content_type="application/json",
        headers=headers,
    )


class PdSidecar:
    """The proxy's parts: the allowlist's sources, the HTTP client and the listening server."""

    def __init__(self, config: SidecarConfig) -> None:
        config.check()
        self.config = config
        self.datastore: Datastore | None = None
        self._sources: list[Any] = []
        self._pool_key: str | None = None
        if config.manifests or config.pool_name:
            self.datastore = Datastore()
        self.allowlist = Allowlist(
            config.allow, self.datastore, self._pool if self.datastore is not None else None
        )
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.decoder = f"{config.decoder_host}:{config.decoder_port}"

    def _pool(self) -> str | None:
        if self._pool_key is None and self.datastore is not None:
            if self.config.pool_name is not None:
                pool = self.datastore.find_pool(self.config.pool_name, self.config.pool_namespace)
                self._pool_key = pool.key if pool is not None else None
            else:
                pools = self.datastore.pools()
                self._pool_key = pools[0].key if len(pools) == 1 else None
        return self._pool_key

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._start_sources()
            # One pooled client for both legs, the gateway's (gateway/upstream.py); no total
            # timeout on the decode leg (a long answer streams for as long as it takes), the
            # prefill leg has its own.
            self._session = upstream_session(DECODER_CONNECT_TIMEOUT_S)
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self.handle)
            # A client that goes away cancels its handler: the legs it started are abandoned, so
            # neither model server keeps working for nobody.
            self._runner = web.AppRunner(
                app, access_log=None, handle_signals=False, shutdown_timeout=5.0, handler_cancellation=True
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
            await site.start()
            sockets: Sequence[socket.socket] = getattr(site._server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1]) if sockets else self.config.port
        except BaseException:
            await self.stop()
            raise

    async def _start_sources(self) -> None:
        config, datastore = self.config, self.datastore
        if datastore is None:
            return
        if config.manifests:
            manifests = ManifestSource(config.manifests, datastore)
            self._sources.append(manifests)
            await manifests.start()
            if config.endpoints_file is not None:
                static = StaticSource(datastore, load_endpoints_file(config.endpoints_file))
                self._sources.append(static)
                static.start()
        elif config.pool_name is not None:
            from inferpool.sources.kubernetes import KubernetesConfig, KubernetesSource
            from inferpool.sources.kubernetes.client import connect

            kube = KubernetesSource(
                datastore,
                # Read-only: the picker writes the pool's status, never its sidecars.
                KubernetesConfig(
                    config.pool_name, config.pool_namespace, config.pool_group, write_status=False
                ),
                await connect(config.kubeconfig),
            )
            kube.owns_api = True
            self._sources.append(kube)
            await kube.start()
            await kube.wait_synced(config.sync_timeout_s)
        if self._pool() is None:
            raise ValueError(
                f"InferencePool {config.pool_name or '(the only one)'} not found"
                + (
                    ""
                    if config.pool_name
                    else ": the manifests hold several or none; choose with --pool-name"
                )
            )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        for source in reversed(self._sources):
            result = source.stop()
            if asyncio.iscoroutine(result):
                await result
        self._sources.clear()

    # -- one request ---------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = end_to_end(request.headers, drop=("host", PREFILLER_HEADER))
        prefiller = request.headers.get(PREFILLER_HEADER, "").strip()
        client_body = body
        outcome: PrefillOutcome | None = None
        report: str | None = None
        cached_tokens: int | None = None  # the prefill server's count, once its leg succeeded
        if prefiller and request.method == "POST" and request.path in PD_PATHS:
            # llm-d's picker may name several, comma-separated; the first is its pick.
            target = prefiller.split(",")[0].strip()
            if not self.allowlist.allows(target):
                log.warning("refused prefill target %r: not a member of the pool", target)
                return _error(
                    403, f"prefill target {target!r} is not allowed: it is not a member of the pool"
                )
            body, outcome = await self._prefill(request, target, body, headers)
            if outcome is not None:
                report = format_prefill_report(outcome)
                cached_tokens = outcome.cached_tokens if outcome.ok else None
        upstream = await self._decode(request, headers, body)
        if upstream is not None and outcome is not None and outcome.ok and upstream.status >= 500:
            # The decoder could not read the prefilled KV blocks (vLLM's default
            # kv_load_failure_policy "fail" answers 500, e.g. when the prefill server went away
            # after answering): the client's own request, prefilled locally, can still be served.
            error = f"decode server answered HTTP {upstream.status} reading the prefilled KV"
            log.warning("%s: resending the request for local prefill", error)
            await upstream.read()
            upstream.release()
            report = format_prefill_report(replace(outcome, kv_transfer_params=None, error=error))
            cached_tokens = None
            upstream = await self._decode(request, headers, client_body)
        if upstream is None:
            extra = {PREFILL_REPORT_HEADER: report} if report is not None else None
            return _error(502, "the decode server is unreachable", extra)
        return await self._relay(request, upstream, report, cached_tokens)

    async def _decode(
        self, request: web.Request, headers: Mapping[str, str], body: bytes
    ) -> aiohttp.ClientResponse | None:
        """The decode leg sent to the decoder; None when it cannot be reached (logged)."""
        assert self._session is not None
        try:
            return await send(
                self._session,
                request.method,
                URL(f"http://{self.decoder}{request.path_qs}"),
                headers,
                body,
                _DECODE_LIMITS,
            )
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("decode server %s unreachable: %s: %s", self.decoder, type(exc).__name__, exc)
            return None

    async def _prefill(
        self, request: web.Request, target: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[bytes, PrefillOutcome | None]:
        """Run the prefill leg: the decode leg's body and the leg's outcome (None when the body is
        not a request vLLM can split)."""
        assert self._session is not None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            return body, None  # not a request vLLM can split: the decoder answers it (its 400)
        outcome = await run_prefill(
            self._session, target, request.path_qs, data, headers, self.config.prefill_timeout_s
        )
        if outcome.kv_transfer_params is None:
            log.warning("prefill on %s failed (%s): the decoder prefills locally", target, outcome.error)
            return body, outcome
        return orjson.dumps(decode_request(data, outcome.kv_transfer_params)), outcome

    async def _relay(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        report: str | None,
        cached_tokens: int | None,
    ) -> web.StreamResponse:
        """The decoder's answer, chunk by chunk as it comes (SSE is never buffered).

        After a remote prefill the decoder counts the whole prompt as cached; its usage is
        rewritten to the prefill server's count, as llm-d's sidecar does (request/pd_usage.py),
        so the client sees what one server would have reported.
        """
        try:
            headers = end_to_end(upstream.headers)
            if report is not None:
                headers[PREFILL_REPORT_HEADER] = report
            usage = None
            if (
                cached_tokens is not None
                and upstream.status < 400
                and "content-encoding" not in upstream.headers
            ):
                streaming = "text/event-stream" in upstream.headers.get("content-type", "")
                usage = CachedTokensRewriter(cached_tokens, streaming)
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
            if upstream.content_length is not None and usage is None:
                response.content_length = upstream.content_length
            await response.prepare(request)
            while True:
                try:
                    chunk = await upstream.content.readany()
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                    # The decoder went away mid-answer: cut the client off too, as a proxy must.
                    log.warning("decode server broke mid-answer: %s", type(exc).__name__)
                    if request.transport is not None:
                        request.transport.close()
                    return response
                last = not chunk
                if usage is not None:
                    chunk = usage.flush() if last else usage.feed(chunk)
                if chunk:
                    try:
                        await response.write(chunk)
                    except ConnectionResetError:
                        upstream.close()  # the client went away: so does the decode leg (vLLM aborts it)
                        return response
                if last:
                    break
            with contextlib.suppress(ConnectionResetError):
                await response.write_eof()
            return response
        finally:
            upstream.release()


def listening_lines(sidecar: PdSidecar) -> list[str]:
    cfg = sidecar.config
    return [
        f"inferpool pd-sidecar: http://{cfg.host}:{sidecar.port} -> decoder http://{sidecar.decoder} "
        f"(connector {cfg.connector})",
        f"  prefill targets allowed: {sidecar.allowlist.describe()}",
    ]


async def serve(
    config: SidecarConfig, stop: asyncio.Event, on_ready: Callable[[list[str]], None] | None = None
) -> None:
    """Run until `stop` is set (SIGINT/SIGTERM in the CLI), then close cleanly."""
    sidecar = PdSidecar(config)
    try:
        await sidecar.start()
        lines = listening_lines(sidecar)
        if on_ready is not None:
            on_ready(lines)
        else:
            for line in lines:
                print(line, flush=True)
        await stop.wait()
    finally:
        await sidecar.stop()


def pd_sidecar(
    port: int = typer.Option(8000, "--port", help="Port to listen on (the InferencePool's targetPort)."),
    host: str = typer.Option("0.0.0.0", "--host", help="Address to listen on."),
    vllm_port: int = typer.Option(
        8200, "--vllm-port", "--model-server-port", help="Port of the decode server on --vllm-host."
    ),
    vllm_host: str = typer.Option("127.0.0.1", "--vllm-host", help="Host of the decode server."),
    connector: str = typer.Option(
        "nixlv2", "--kv-connector", "--connector", help="KV protocol between prefiller and decoder: nixlv2."
    ),
    allow: list[str] = typer.Option(
        [], "--allow", help="A prefill target allowed besides the pool's members: HOST or HOST:PORT (repeat)."
    ),
    manifests: list[Path] = typer.Option(
        [], "-f", "--filename", help="Manifest files/dirs with the InferencePool (instead of Kubernetes)."
    ),
    endpoints: Path | None = typer.Option(
        None, "--endpoints", help="Static endpoints file: the pool's members (with -f)."
    ),
    pool_name: str | None = typer.Option(
        None, "--pool-name", help="InferencePool whose members are the allowed prefill targets."
    ),
    pool_namespace: str = typer.Option("default", "--pool-namespace", help="Namespace of the InferencePool."),
    pool_group: str = typer.Option(
        "inference.networking.k8s.io", "--pool-group", help="API group of the pool."
    ),
    kubeconfig: str | None = typer.Option(
        None, "--kubeconfig", help="Kubeconfig for --pool-name (default: in-cluster, else ~/.kube/config)."
    ),
    prefill_timeout: float = typer.Option(
        120.0,
        "--prefill-timeout",
        min=0.0,
        help="Seconds the prefill leg may take before the decoder prefills locally (0: no limit).",
    ),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """P/D sidecar beside a decode server: runs the prefill leg the picker names in x-prefiller-host-port."""
    configure_logging(log_level)
    config = SidecarConfig(
        host=host,
        port=port,
        decoder_host=vllm_host,
        decoder_port=vllm_port,
        connector=connector,
        allow=list(allow),
        manifests=list(manifests),
        endpoints_file=endpoints,
        pool_name=pool_name,
        pool_namespace=pool_namespace,
        pool_group=pool_group,
        kubeconfig=kubeconfig,
        prefill_timeout_s=prefill_timeout or None,
    )
    try:
        config.check()
        uvloop.run(_run(config))
    except (ValueError, TimeoutError, OSError) as err:  # ManifestLoadFailed is a ValueError
        typer.echo(f"inferpool pd-sidecar: {err}", err=True)
        raise typer.Exit(1) from err


async def _run(config: SidecarConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(config, stop)
