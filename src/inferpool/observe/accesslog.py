"""One structured JSON line per request: enough to answer "where did this request go, and why".

Lines go to a text stream (stderr by default, or a file) so they can be piped into any log
shipper; the writer never raises into the data plane.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import IO

import orjson


@dataclass
class AccessEntry:
    request_id: str
    method: str
    path: str
    listener: str
    status: int
    duration_ms: float
    route: str | None = None
    backend: str | None = None  # "InferencePool/ns/name" or "Service/ns/name"
    model: str | None = None  # as the client asked
    target_model: str | None = None  # after InferenceModel / rewrite
    endpoint: str | None = None  # ip:port that served (the last one tried)
    attempts: int = 0
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # endpoint -> scorer -> score
    ttft_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    error: str | None = None
    ts: float = field(default_factory=time.time)

    def to_json(self) -> bytes:
        return orjson.dumps({k: v for k, v in asdict(self).items() if v is not None and v != {}})


class AccessLog:
    """Writes entries as JSON lines; `enabled=False` keeps only the counter (benchmarks, tests)."""

    def __init__(self, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.written = 0

    def write(self, entry: AccessEntry) -> None:
        self.written += 1
        if not self.enabled:
            return
        try:
            self._stream.write(entry.to_json().decode() + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed or full log stream must not fail requests
