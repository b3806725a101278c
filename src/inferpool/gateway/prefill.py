"""The prefill leg of a disaggregated request, over HTTP: one place for both planes that run it.

The built-in gateway (`inferpool serve`) and `inferpool pd-sidecar` (beside a decode server,
behind Envoy) both send the prefill leg here and then forward the decode leg themselves.
A prefill that fails in any way (refused connection, timeout, an error status, an answer
without usable `kv_transfer_params`) is not an error for the client: the outcome says so and
the caller sends the client's request unchanged to the decode server, which prefills locally.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from inferpool.request.disagg import cached_tokens_of, prefill_request, transfer_params_of

# Headers of the client's request the prefill leg keeps: it carries the same identity and
# tracing as the decode leg, but its own body (so no length or encoding of the client's).
_PREFILL_DROPPED = frozenset(
    {"content-length", "transfer-encoding", "content-encoding", "host", "accept-encoding"}
)


@dataclass(frozen=True)
class PrefillOutcome:
    """What one prefill leg came to; `kv_transfer_params` is None when it failed (fall back)."""

    hostport: str
    kv_transfer_params: dict[str, Any] | None
    status: int  # HTTP status of the prefill answer; 0 when none came (connection, timeout)
    duration_s: float
    cached_tokens: int = 0  # prompt tokens the prefill server had cached (reported to the client)
    error: str | None = None  # why it failed, for the record and logs; None on success
    connect_failed: bool = False  # no connection could be made: the endpoint is likely gone

    @property
    def ok(self) -> bool:
        return self.kv_transfer_params is not None


async def run_prefill(
    session: aiohttp.ClientSession,
    hostport: str,
    path: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str],
    timeout_s: float | None,
) -> PrefillOutcome:
    """Send the prefill leg of `body` (the client's decoded request) to `hostport` and read its answer."""
    started = time.monotonic()
    leg_headers = {k: v for k, v in headers.items() if k.lower() not in _PREFILL_DROPPED}
    leg_headers["content-type"] = "application/json"
    try:
        async with session.post(
            f"http://{hostport}{path}",
            data=orjson.dumps(prefill_request(body)),
            headers=leg_headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            allow_redirects=False,
        ) as answer:
            raw = await answer.read()
            status = answer.status
    except TimeoutError:
        return PrefillOutcome(hostport, None, 0, time.monotonic() - started, error="prefill timed out")
    except (aiohttp.ClientError, ConnectionError) as exc:
        return PrefillOutcome(
            hostport,
            None,
            0,
            time.monotonic() - started,
            error=f"{type(exc).__name__}: {exc}",
            connect_failed=isinstance(exc, aiohttp.ClientConnectorError),
        )
    duration = time.monotonic() - started
    if status >= 400:
        return PrefillOutcome(hostport, None, status, duration, error=f"prefill answered HTTP {status}")
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return PrefillOutcome(hostport, None, status, duration, error="prefill answer is not JSON")
    params = transfer_params_of(decoded)
    if params is None:
        return PrefillOutcome(
            hostport,
            None,
            status,
            duration,
            error="prefill answer has no kv_transfer_params for remote prefill",
        )
    return PrefillOutcome(hostport, params, status, duration, cached_tokens=cached_tokens_of(decoded))
