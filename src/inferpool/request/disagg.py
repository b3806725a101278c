"""Prefill/decode disaggregation: the wire facts, shared by every plane that runs a P/D request.

One place for the names llm-d and vLLM use, and for the two request bodies of vLLM's
disaggregated protocol (NixlConnector, "nixlv2" in llm-d's routing sidecar):

1. the prefill leg goes to a prefill endpoint with `kv_transfer_params` asking for remote
   decode, `max_tokens` 1 and no streaming; vLLM computes the prompt's KV blocks, keeps
   them for the decoder to pull, and answers with the `kv_transfer_params` that locate them;
2. the decode leg is the client's own request plus those `kv_transfer_params`; the decode
   server pulls the blocks instead of computing them and answers as usual.

Pure functions over decoded bodies (no HTTP): the built-in gateway and `inferpool pd-sidecar`
both call them, so the protocol is written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The role label and role sets live in a leaf module (the scheduler's role filters read them
# too); re-exported here, beside the protocol they belong to.
from inferpool.roles import (
    DECODE_ROLES,
    PREFILL_ROLES,
    ROLE_BOTH,
    ROLE_DECODE,
    ROLE_LABEL,
    ROLE_PREFILL,
    ROLE_PREFILL_DECODE,
    can_decode,
    can_prefill,
    role_of,
)

# The request header in which the endpoint picker names the prefill endpoint ("host:port") for
# the sidecar beside the decode server (llm-d-router pkg/common/routing). A client must never
# choose it: every plane strips it from incoming requests.
PREFILLER_HEADER = "x-prefiller-host-port"

KV_TRANSFER_PARAMS = "kv_transfer_params"

__all__ = [
    "DECODE_ROLES",
    "KV_TRANSFER_PARAMS",
    "PREFILLER_HEADER",
    "PREFILL_ROLES",
    "ROLE_BOTH",
    "ROLE_DECODE",
    "ROLE_LABEL",
    "ROLE_PREFILL",
    "ROLE_PREFILL_DECODE",
    "cached_tokens_of",
    "can_decode",
    "can_prefill",
    "decode_request",
    "prefill_request",
    "role_of",
    "transfer_params_of",
]


# Fields the prefill leg drops: what asks for more than one sequence, and lower bounds on the
# output that would contradict its one token (vLLM rejects min_tokens > max_tokens, so the leg
# would always fail and fall back). The decode leg keeps them all: it is the client's request.
_PREFILL_DROPPED = ("best_of", "min_tokens")


def prefill_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The prefill leg's body: the client's request asking for remote decode, one token, unstreamed.

    As llm-d's routing sidecar (nixlv2) builds it: `kv_transfer_params` asking for a remote
    decode, `stream` false and no `stream_options`, `max_tokens` 1 (and `max_completion_tokens`
    1 when sent). Beyond the sidecar, it asks for one sequence: with the client's `n` the
    prefill server would compute the prompt n times and hold n sets of blocks, of which the
    decoder pulls one and the rest expire unread.
    """
    leg = {key: value for key, value in body.items() if key not in _PREFILL_DROPPED}
    leg[KV_TRANSFER_PARAMS] = {
        "do_remote_decode": True,
        "do_remote_prefill": False,
        "remote_engine_id": None,
        "remote_block_ids": None,
        "remote_host": None,
        "remote_port": None,
    }
    leg["stream"] = False
    leg.pop("stream_options", None)
    leg["max_tokens"] = 1
    if "max_completion_tokens" in leg:  # chat's newer name wins in vLLM when both are set
        leg["max_completion_tokens"] = 1
    if "n" in leg:  # one sequence, so one prompt computation and one set of blocks to pull
        leg["n"] = 1
    return leg


def decode_request(body: Mapping[str, Any], kv_transfer_params: Mapping[str, Any]) -> dict[str, Any]:
    """The decode leg's body: the client's request as sent, plus the prefill's `kv_transfer_params`."""
    leg = dict(body)
    leg[KV_TRANSFER_PARAMS] = dict(kv_transfer_params)
    return leg


def transfer_params_of(prefill_answer: Any) -> dict[str, Any] | None:
    """The `kv_transfer_params` a prefill answer carries, when they let a decoder pull the blocks.

    None when the answer has none or they do not ask for a remote prefill (a vLLM without a
    KV connector answers the request as an ordinary one): the decoder then prefills locally.
    """
    if not isinstance(prefill_answer, Mapping):
        return None
    params = prefill_answer.get(KV_TRANSFER_PARAMS)
    if not isinstance(params, Mapping) or not params.get("do_remote_prefill"):
        return None
    return dict(params)


def cached_tokens_of(prefill_answer: Any) -> int:
    """Prompt tokens the prefill server found in its own prefix cache (usage.prompt_tokens_details)."""
    if not isinstance(prefill_answer, Mapping):
        return 0
    usage = prefill_answer.get("usage")
    details = usage.get("prompt_tokens_details") if isinstance(usage, Mapping) else None
    cached = details.get("cached_tokens") if isinstance(details, Mapping) else None
    return cached if isinstance(cached, int) and cached > 0 else 0
