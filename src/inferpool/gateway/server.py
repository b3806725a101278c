"""The built-in data plane process: one aiohttp server per Gateway listener, plus the admin port.

Records from the request core feed the metrics, the decision log and the access log;
the listeners only move bytes. stop() drains in-flight requests before closing.
"""

from __future__ import annotations

import logging
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from inferpool.gateway.auth import KeyStore
from inferpool.gateway.config import ServeConfig
from inferpool.gateway.proxy import Core, Exchange, Proxy
from inferpool.gateway.ratelimit import RateLimiter
from inferpool.gateway.routing import HTTPRoute, Listener, RouteTable, TLSConfig
from inferpool.gateway.security import protect_metrics
from inferpool.observe.accesslog import AccessEntry, AccessLog
from inferpool.observe.admin import DecisionLog, admin_app, decision_from_record
from inferpool.observe.metrics import GatewayMetrics, RequestObservation
from inferpool.request.director import Director, RequestRecord
from inferpool.request.plane import Routed
from inferpool.state import Datastore

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


@dataclass
class _Pending:
    """Records of requests the core refused, kept until the data plane logs them."""

    records: dict[str, RequestRecord] = field(default_factory=dict)


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
    """Listeners + admin around one Proxy; start() binds, stop() drains and closes."""

    def __init__(
        self,
        datastore: Datastore,
        director: Director,
        listeners: list[Listener],
        routes: list[HTTPRoute],
        config: ServeConfig | None = None,
        services: dict[str, list[tuple[str, int]]] | None = None,
        access_log: AccessLog | None = None,
    ) -> None:
        self.config = config or ServeConfig()
        self.datastore = datastore
        self.director = director
        self.listeners = listeners
        self.metrics = GatewayMetrics(datastore)
        self.decisions = DecisionLog(self.config.decisions_kept)
        self.access_log = access_log or AccessLog()
        self._pending = _Pending()
        core: Core = director  # type: ignore[assignment]  # RoutedRequest satisfies the Routed protocol
        self.keys = KeyStore(Path(self.config.auth_keys)) if self.config.auth_keys else None
        self.limiter = RateLimiter() if self.keys is not None else None
        self.proxy = Proxy(
            RouteTable(listeners, routes),
            datastore,
            core,
            self.config.proxy,
            services,
            on_exchange=self._exchange_done,
            on_routed=self._routed,
            keys=self.keys,
            limiter=self.limiter,
        )
        self.bound: list[Bound] = []
        self.admin_url: str | None = None
        self._runners: list[web.AppRunner] = []
        self._unsubscribe = director.subscribe(self._record)

    # -- lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        await self.proxy.start()
        port_map = dict(self.config.port_map)
        try:
            for listener in self.listeners:
                app = web.Application(client_max_size=self.config.proxy.max_body_bytes + 1)
                app.router.add_route("*", "/{tail:.*}", self.proxy.handler(listener))
                port = port_map.get(listener.port, listener.port)
                ctx = ssl_context(listener.tls) if listener.tls is not None else None
                bound_port = await self._serve(app, self.config.host, port, ctx)
                self.bound.append(Bound(listener, self.config.host, bound_port))
            if self.config.admin_port is not None:
                admin = admin_app(self.datastore, self.metrics, self.decisions)
                if self.config.metrics_token:
                    protect_metrics(admin, self.config.metrics_token)
                port = await self._serve(admin, self.config.admin_host, self.config.admin_port, None)
                host = self.config.admin_host
                self.admin_url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        except BaseException:
            await self.stop(drain=False)
            raise

    async def _serve(self, app: web.Application, host: str, port: int, ctx: ssl.SSLContext | None) -> int:
        # handler_cancellation: a client that goes away cancels its handler, which closes the
        # upstream connection, which makes the model server abort the generation.
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
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
        self._unsubscribe()

    def ready(self) -> bool:
        return all(self.datastore.ready_endpoints(p.key) for p in self.datastore.pools())

    # -- observation -----------------------------------------------------------------
    def _routed(self, routed: Routed) -> None:
        self.metrics.request_started(routed.incoming_model)

    def _record(self, record: RequestRecord) -> None:
        self.metrics.observe(RequestObservation.from_record(record))
        self.decisions.add(decision_from_record(record))
        if record.endpoint is None:
            self._pending.records[record.request_id] = record
            if len(self._pending.records) > 1000:  # never grow without bound if a plane never logs
                self._pending.records.pop(next(iter(self._pending.records)))

    def _exchange_done(self, ex: Exchange) -> None:
        record: RequestRecord | None = None
        if ex.routed is not None:
            self.metrics.request_finished(ex.routed.incoming_model)
            record = getattr(ex.routed, "record", None)
        else:
            record = self._pending.records.pop(ex.request_id, None)
        entry = AccessEntry(
            request_id=ex.request_id,
            method=ex.method,
            path=ex.path,
            listener=ex.listener,
            status=ex.status,
            duration_ms=round(ex.duration_s * 1000, 3),
            route=ex.route,
            backend=ex.backend,
            endpoint=ex.endpoint,
            attempts=ex.attempts,
            ttft_ms=round(ex.ttft_s * 1000, 3) if ex.ttft_s is not None else None,
            request_bytes=ex.request_bytes,
            response_bytes=ex.response_bytes,
            error=ex.error,
        )
        if record is not None:
            entry.model = record.model
            entry.target_model = record.target_model
            entry.scores = {s.endpoint: {**s.scores, "total": s.total} for s in record.scores}
            entry.input_tokens = record.prompt_tokens
            entry.output_tokens = record.completion_tokens
            if record.ttft_s is not None:
                entry.ttft_ms = round(record.ttft_s * 1000, 3)
        self.access_log.write(entry)
