"""prefill-filter and decode-filter: keep the endpoints whose llm-d role lets them take that leg.

Hard filters, as llm-d's: a P/D profile must never send a prefill to a decode-only server
(it would decode the whole answer) or a decode to a prefill-only one.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferpool.roles import can_decode, can_prefill
from inferpool.scheduling.types import SchedulingRequest
from inferpool.state import Endpoint


@dataclass
class PrefillFilter:
    """Endpoints labelled prefill, both, or one of llm-d's encode/prefill variants."""

    name: str = "prefill-filter"
    soft: bool = False

    def filter(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        return [e for e in endpoints if can_prefill(e.labels)]


@dataclass
class DecodeFilter:
    """Endpoints labelled decode or both, and unlabelled ones (an ordinary server decodes)."""

    name: str = "decode-filter"
    soft: bool = False

    def filter(self, req: SchedulingRequest, endpoints: list[Endpoint]) -> list[Endpoint]:
        return [e for e in endpoints if can_decode(e.labels)]
