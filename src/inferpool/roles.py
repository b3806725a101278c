"""Prefill/decode roles of model-server endpoints, as llm-d labels them.

A leaf module: the scheduler's role filters (scheduling/) and the planes that run the
disaggregated protocol (request/disagg.py and above) read the same label and role sets.
"""

from __future__ import annotations

from collections.abc import Mapping

# The pod label llm-d uses for an endpoint's role (llm-d-router filter/bylabel/roles.go).
ROLE_LABEL = "llm-d.ai/role"
ROLE_PREFILL = "prefill"
ROLE_DECODE = "decode"
ROLE_BOTH = "both"
ROLE_PREFILL_DECODE = "prefill-decode"  # llm-d's alias of "both" in its E/P/D naming
# Roles that may take each leg, as llm-d's prefill-filter / decode-filter accept them. An endpoint
# without the label is a decoder (llm-d's decode filter keeps unlabelled pods), never a prefiller.
PREFILL_ROLES = frozenset(
    {ROLE_PREFILL, ROLE_BOTH, ROLE_PREFILL_DECODE, "encode-prefill", "encode-prefill-decode"}
)
DECODE_ROLES = frozenset({ROLE_DECODE, ROLE_BOTH, ROLE_PREFILL_DECODE, "encode-prefill-decode"})


def role_of(labels: Mapping[str, str]) -> str | None:
    """The endpoint's P/D role label, or None when it has none (an ordinary, aggregated server)."""
    return labels.get(ROLE_LABEL)


def can_prefill(labels: Mapping[str, str]) -> bool:
    return labels.get(ROLE_LABEL) in PREFILL_ROLES


def can_decode(labels: Mapping[str, str]) -> bool:
    role = labels.get(ROLE_LABEL)
    return role is None or role in DECODE_ROLES
