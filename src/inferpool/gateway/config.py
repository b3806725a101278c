"""Typed settings of the built-in data plane."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProxyConfig:
    max_retries: int = 2  # extra tries on the next-best endpoint after a connect error or a 5xx
    max_body_bytes: int = 16 * 1024 * 1024  # request bodies beyond this are answered 413
    connect_timeout_s: float = 5.0
    drain_timeout_s: float = 30.0  # how long shutdown waits for in-flight requests


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # where listeners bind
    admin_host: str = "127.0.0.1"
    admin_port: int | None = 9090  # None: no admin server; 0: a free port
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    port_map: tuple[tuple[int, int], ...] = ()  # listener port -> port actually bound (local mode)
    decisions_kept: int = 200  # routing decisions kept for /api/decisions
    auth_keys: str | None = None  # API keys file (docs/security.md); None: authentication off
    metrics_token: str | None = None  # bearer token the admin port's /metrics requires; None: open
    otlp_traces_endpoint: str | None = None  # OTLP/gRPC collector for spans (docs/tracing.md); None: off
