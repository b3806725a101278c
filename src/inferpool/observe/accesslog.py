"""One structured JSON line per request: enough to answer "where did this request go, and why".

Lines go to a text stream (stderr by default, or a file) so they can be piped into any log
shipper; the writer never raises into the data plane. The line is read off the request's
one record (field names documented in docs/gateway.md); absent fields are left out.
"""

from __future__ import annotations

import sys
from typing import IO, Any

import orjson

from inferpool.records import PrefillLeg, RequestRecord


def access_line(record: RequestRecord) -> bytes:
    http = record.http
    fields: dict[str, Any] = {
        "request_id": record.request_id,
        "method": http.method if http else None,
        "path": http.path if http else None,
        "listener": http.listener if http else None,
        "status": record.status,
        "duration_ms": round(record.e2e_s * 1000, 3),
        "route": http.route if http else None,
        "backend": http.backend if http else None,
        "model": record.model or None,
        "target_model": record.target_model or None,
        "endpoint": record.hostport,
        "attempts": record.attempts,
        "scores": {s.endpoint: {**s.scores, "total": s.total} for s in record.scores} or None,
        "ttft_ms": round(record.ttft_s * 1000, 3) if record.ttft_s is not None else None,
        "input_tokens": record.prompt_tokens,
        "output_tokens": record.completion_tokens,
        "request_bytes": record.request_bytes,
        "response_bytes": record.response_bytes,
        "error": record.error,
        "shed_reason": record.shed_reason,
        "prefill": _prefill_fields(record.prefill) if record.prefill is not None else None,
        "ts": record.started_at + record.e2e_s,
    }
    return orjson.dumps({k: v for k, v in fields.items() if v is not None})


def _prefill_fields(leg: PrefillLeg) -> dict[str, Any]:
    """The prefill leg of a P/D request; the line's `endpoint` is where it was decoded."""
    fields = {
        "endpoint": leg.hostport,
        "status": leg.status,
        "duration_ms": round(leg.duration_s * 1000, 3) if leg.duration_s is not None else None,
        "fell_back": leg.fell_back,
        "error": leg.error,
    }
    return {k: v for k, v in fields.items() if v is not None}


class AccessLog:
    """Writes records as JSON lines; `enabled=False` keeps only the counter (benchmarks, tests)."""

    def __init__(self, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.written = 0

    def write(self, record: RequestRecord) -> None:
        self.written += 1
        if not self.enabled:
            return
        try:
            self._stream.write(access_line(record).decode() + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed or full log stream must not fail requests
