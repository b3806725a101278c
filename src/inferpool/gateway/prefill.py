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
from multidict import CIMultiDict
from yarl import URL

from inferpool.gateway.upstream import send
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
    # (case-insensitive: the client's own Content-Type, in whatever case, is replaced)
    leg_headers = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _PREFILL_DROPPED)
    leg_headers["content-type"] = "application/json"
    try:
        answer = await send(
            session,
            "POST",
            URL(f"http://{hostport}{path}"),
            leg_headers,
            orjson.dumps(prefill_request(body)),
            aiohttp.ClientTimeout(total=timeout_s),
        )
        try:
            raw = await answer.read()
            status = answer.status
        finally:
            if answer.content.at_eof():
                answer.release()  # back to the pool
            else:
                answer.close()  # half read: the connection goes
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


# inferpool's own response header (not llm-d's: its sidecar reports nothing back) in which
# `inferpool pd-sidecar` tells the endpoint picker how the prefill leg went, so the picker can
# record the leg, release its in-flight count and count a fallback. The picker strips it before
# the client sees the answer. Value: `ok; status=200; ms=41.2`, or
# `fallback; status=503; ms=12.0; error="prefill answered HTTP 503"` (the decoder prefilled
# locally). Only the first token is the outcome; the fields after it may come in any order.
PREFILL_REPORT_HEADER = "x-inferpool-prefill"
_REPORT_ERROR_LIMIT = 200


@dataclass(frozen=True)
class PrefillReport:
    """The prefill leg as the sidecar reported it in PREFILL_REPORT_HEADER."""

    ok: bool
    status: int = 0
    duration_s: float | None = None
    error: str | None = None


def format_prefill_report(outcome: PrefillOutcome) -> str:
    """The PREFILL_REPORT_HEADER value for `outcome` (header-safe: the error text is sanitised)."""
    value = (
        f"{'ok' if outcome.ok else 'fallback'}; status={outcome.status}; ms={outcome.duration_s * 1000:.1f}"
    )
    if outcome.error:
        # Header values are visible ASCII; quotes and backslashes would end the quoted string.
        safe = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in outcome.error)
        value += f'; error="{safe[:_REPORT_ERROR_LIMIT]}"'
    return value


def parse_prefill_report(value: str) -> PrefillReport | None:
    """A PREFILL_REPORT_HEADER value read back; None when it is not one (no outcome token)."""
    head, _, rest = value.partition(";")
    outcome = head.strip()
    if outcome not in ("ok", "fallback"):
        return None
    status, duration_s, error = 0, None, None
    error_at = rest.find('error="')
    if error_at >= 0:
        error = rest[error_at + 7 :].rstrip().removesuffix('"')
        rest = rest[:error_at]
    for field_text in rest.split(";"):
        key, _, raw = field_text.strip().partition("=")
        try:
            if key == "status":
                status = int(raw)
            elif key == "ms":
                duration_s = float(raw) / 1000
        except ValueError:
            continue  # a malformed field is left out; the outcome itself still counts
    return PrefillReport(outcome == "ok", status, duration_s, error or None)
