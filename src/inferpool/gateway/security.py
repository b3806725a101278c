"""The admin port's `/metrics` behind the metrics-reader bearer token (the guide creates one)."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web

from inferpool.gateway.auth import bearer_token

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROTECTED_PATHS = frozenset({"/metrics"})


def protect_metrics(app: web.Application, token: str) -> None:
    """Require `Authorization: Bearer <token>` on /metrics; health and state pages stay open."""
    expected = token.encode("utf-8")

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in PROTECTED_PATHS:
            given = bearer_token({"authorization": request.headers.get("Authorization", "")})
            if given is None or not hmac.compare_digest(given.encode("utf-8"), expected):
                return web.Response(
                    status=401,
                    text="metrics require the metrics-reader bearer token\n",
                    headers={"WWW-Authenticate": 'Bearer realm="inferpool-metrics"'},
                )
        return await handler(request)

    app.middlewares.append(check)


def read_token(value: str) -> str:
    """A token given as `@FILE` is read from the file (a mounted Secret); anything else is the token."""
    if value.startswith("@"):
        with open(value[1:], encoding="utf-8") as f:
            return f.read().strip()
    return value
