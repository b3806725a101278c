"""Log probabilities the simulated replica reports when asked (vLLM's `logprobs`, `top_logprobs`
and `echo` with logprobs), in vLLM's shapes.

A dummy-weight model has no meaningful distribution; a client needs the shape, and a test needs
the same numbers again: each figure is derived from the token id and its position. The sampled
token is always the most likely one, as under greedy sampling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inferpool.tokenization import Tokenizer

MAX_LOGPROBS = 20  # vLLM's --max-logprobs default: more is a 400


def _logprob(token_id: int, position: int, rank: int) -> float:
    """rank 0: the sampled token; the alternatives below it, each less likely than the one before."""
    spread = ((token_id * 2654435761 + position * 40503) % 1000) / 1000.0
    return round(-(0.05 + 1.5 * spread) - 0.75 * rank, 4)


def _alternatives(tok: Tokenizer, token_id: int, position: int, k: int) -> list[tuple[str, float]]:
    words = tok.words
    out: list[tuple[str, float]] = []
    step = 0
    while len(out) < k:
        candidate = words[(token_id * 31 + position * 17 + step * 7919) % len(words)][0]
        step += 1
        if candidate != token_id:
            out.append((tok.piece(candidate) or f"<{candidate}>", _logprob(token_id, position, len(out) + 1)))
    return out


def _token_text(tok: Tokenizer, token_id: int) -> str:
    return tok.piece(token_id) or tok.decode([token_id])


def completion_logprobs(
    tok: Tokenizer,
    token_ids: Sequence[int],
    top: int,
    first_position: int,
    text_offset: int,
    *,
    echo_first: bool = False,
) -> dict[str, Any]:
    """`choices[].logprobs` of /v1/completions for these tokens (one chunk's, or a whole answer's).

    `text_offset`: where the first token's text starts in the choice's text; `echo_first`: the
    first token opens an echoed prompt, which has no logprob (None), as in vLLM."""
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    top_logprobs: list[dict[str, float] | None] = []
    offsets: list[int] = []
    for i, token_id in enumerate(token_ids):
        text = _token_text(tok, token_id)
        position = first_position + i
        tokens.append(text)
        offsets.append(text_offset)
        text_offset += len(tok.piece(token_id))  # a special token ("<s>") adds nothing to the choice's text
        if echo_first and i == 0:
            token_logprobs.append(None)
            top_logprobs.append(None)
            continue
        sampled = _logprob(token_id, position, 0)
        token_logprobs.append(sampled)
        # vLLM lists the sampled token beside the `top` most likely (it is one of them here)
        top_logprobs.append({text: sampled, **dict(_alternatives(tok, token_id, position, top))})
    return {
        "text_offset": offsets,
        "token_logprobs": token_logprobs,
        "tokens": tokens,
        "top_logprobs": top_logprobs,
    }


def chat_logprobs(tok: Tokenizer, token_ids: Sequence[int], top: int, first_position: int) -> dict[str, Any]:
    """`choices[].logprobs` of /v1/chat/completions: one entry per token, `top` alternatives each."""
    content = []
    for i, token_id in enumerate(token_ids):
        position = first_position + i
        sampled = _chat_entry(_token_text(tok, token_id), _logprob(token_id, position, 0))
        # the sampled token is the most likely here, so it heads its own top list
        alternatives = [
            _chat_entry(alt, lp) for alt, lp in _alternatives(tok, token_id, position, max(0, top - 1))
        ]
        content.append({**sampled, "top_logprobs": [sampled, *alternatives][:top]})
    return {"content": content}


def _chat_entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}
