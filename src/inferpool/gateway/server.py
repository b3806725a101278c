"""The built-in data plane process: one aiohttp server per Gateway listener, plus the admin port.

Records from the request core feed the metrics, the decision log and the access log
(observe.Observation); the listeners only move bytes. stop() drains in-flight requests before closing.
"""

from __future__ import annotations

import logging
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from inferpool.gateway.config import ServeConfig
from inferpool.gateway.proxy import Proxy
from inferpool.gateway.routing import HTTPRoute, Listener, RouteTable, TLSConfig
from inferpool.gateway.tenancy import Tenancy
from inferpool.observe.accesslog import AccessLog
from inferpool.observe.admin import AdminAuth, admin_app
from inferpool.observe.kvindex_view import kv_index_view
from inferpool.observe.metrics import GatewayMetrics
from inferpool.observe.observation import Observation
from inferpool.observe.tracing import Tracing
from inferpool.request.core import Core

log = logging.getLogger(__name__)


@dataclass
class Bound:
    listener: Listener
    host: str
    port: int

    @property
    def url(self) -> str:
        scheme = "https" if self.listener.protocol == "HTTPS" else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"


def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """A server context from PEM bytes (the ssl module only loads files, so they go through a temp dir)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory(prefix="inferpool-tls-") as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        cert.write_bytes(tls.cert_pem)
        key.write_bytes(tls.key_pem)
        key.chmod(0o600)
        ctx.load_cert_chain(cert, key)
    return ctx


class GatewayServer:
    """Listeners + admin around one Proxy over the core; start() binds, stop() drains and closes."""

    def __init__(
        self,
        core: Core,
        listeners: list[Listener],
        routes: list[HTTPRoute],
        config: ServeConfig | None = None,
        services: dict[str, list[tuple[str, int]]] | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self.config = config or ServeConfig()
        self.core = core
        self.datastore = core.datastore
        self.listeners = listeners
        endpoint = self.config.otlp_traces_endpoint
        self.tracing = Tracing.otlp(endpoint, "inferpool-gateway", "gateway") if endpoint else None
        self.observation = Observation(
            core.datastore,
            decisions_kept=self.config.decisions_kept,
            access_log=access_log or AccessLog(),
            tracing=self.tracing,
        )
        self.proxy = Proxy(
            RouteTable(listeners, routes),
            core.datastore,
            core.director,
            self.config.proxy,
            services,
            tenancy=Tenancy(self.config.auth_keys),
            tracing=self.tracing,
        )
        self.proxy.on_connect_error = core.connect_failed
        self.observation.attach(core.director, core.flow_control)
        self.bound: list[Bound] = []
        self.admin_url: str | None = None
        self._runners: list[web.BaseRunner] = []

    @property
    def metrics(self) -> GatewayMetrics:
        return self.observation.metrics

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        await self.proxy.start()
        port_map = dict(self.config.port_map)
        try:
            for listener in self.listeners:
                # aiohttp's low-level server: every request of a listener goes to the one
                # handler, so an Application's router, middleware chain and per-request Request
                # object would only cost (≈20 µs of ≈420 per request in the bare proxy on a
                # slow core); the proxy answers `Expect: 100-continue` itself.
                server = web.Server(self.proxy.handler(listener), handler_cancellation=True, access_log=None)
                port = port_map.get(listener.port, listener.port)
                ctx = ssl_context(listener.tls) if listener.tls is not None else None
                bound_port = await self._serve(
                    web.ServerRunner(server, shutdown_timeout=1.0), self.config.host, port, ctx
                )
                self.bound.append(Bound(listener, self.config.host, bound_port))
            if self.config.admin_port is not None:
                admin = admin_app(
                    self.datastore,
                    self.observation.metrics,
                    self.observation.decisions,
                    self.not_ready,
                    AdminAuth(static_token=self.config.metrics_token),
                    kv_index=kv_index_view(self.core),
                )
                runner = web.AppRunner(
                    admin, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
                )
                port = await self._serve(runner, self.config.admin_host, self.config.admin_port, None)
                host = self.config.admin_host
                self.admin_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        except BaseException:
            await self.stop(drain=False)
            raise

    async def _serve(self, runner: web.BaseRunner, host: str, port: int, ctx: ssl.SSLContext | None) -> int:
        # handler_cancellation (set on both runners' servers): a client that goes away cancels
        # its handler, which closes the upstream connection, which makes the model server abort
        # the generation.
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, host, port, ssl_context=ctx, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self, drain: bool = True) -> None:
        """Stop accepting, wait for in-flight requests (up to the drain timeout), close everything."""
        for runner in self._runners[: len(self.bound)]:
            for site in list(runner.sites):
                await site.stop()
        if drain and not await self.proxy.drained(self.config.proxy.drain_timeout_s):
            log.warning("drain timeout: %d requests still in flight", self.proxy.in_flight)
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        await self.proxy.close()
        self.observation.detach()
        if self.tracing is not None:
            await self.tracing.close()  # after the drain: the last requests' spans go out too

    def not_ready(self) -> str | None:
        """The gateway's readiness rule (docs/gateway.md): every pool has a ready endpoint."""
        for pool in self.datastore.pools():
            if not self.datastore.ready_endpoints(pool.key):
                return f"pool {pool.key} has no ready endpoint"
        return None

    def ready(self) -> bool:
        return self.not_ready() is None
