"""Tokens of prompt text seen before, segment by segment: a shared prefix is tokenized once.

llm-d's precise scorer keeps an LRU "prefix store" of prompt text in 256-character blocks with
their tokens (llm-d-kv-cache-manager, `prefixStoreConfig`), and skips tokenizing a prompt whose
cached blocks cover most of it (`minPrefixOverlapRatio`, 0.8): the tokens of the uncovered rest
are then missing, and those near a block edge may be wrong. Here reuse is exact. The text is cut
only where no token can span the cut (`BOUNDARY`: a space between two ASCII letters, where
every tokenizer this store is used with starts a new word), so the segments' tokens, joined,
are the whole text's tokens; cached segments are reused and the rest is tokenized as it is.

A segment is at least SEGMENT_CHARS long and ends at the first boundary after that; it is keyed
by a hash chain over the segments before it (as KV blocks are), so a key names the whole text
from the start of the prompt to the segment's end.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import xxhash

SEGMENT_CHARS = 256  # llm-d's prefix-store block size
# ≈2 M characters of distinct prompt prefixes (a segment holds ≈64 ids: ≤ 2.3 KB as Python ints,
# so ≤ 20 MB); least recently used segments go first
DEFAULT_MAX_SEGMENTS = 8192
# "a b": the space starts the next word's piece in the simulator's tokenizer (words are
# `\s*\S+`) and in byte-level BPE pre-tokenizers (GPT-2's ` ?\p{L}+`, Llama-3's and Qwen's
# `[^\r\n\p{L}\p{N}]?\p{L}+`), so nothing before it merges with anything after it.
BOUNDARY = re.compile(r"(?<=[A-Za-z]) (?=[A-Za-z])")


class PrefixTokenStore:
    """`encode(text)` equals the wrapped `encode(text)`; segments seen before are not re-tokenized."""

    def __init__(
        self,
        encode: Callable[[str], list[int]],
        max_segments: int = DEFAULT_MAX_SEGMENTS,
        segment_chars: int = SEGMENT_CHARS,
    ) -> None:
        self._encode = encode
        self._max_segments = max_segments
        self._segment_chars = segment_chars
        self._segments: OrderedDict[int, tuple[int, ...]] = OrderedDict()
        self.reused = 0  # segments taken from the store
        self.tokenized = 0  # segments tokenized (and kept)

    def __len__(self) -> int:
        return len(self._segments)

    def encode(self, text: str) -> list[int]:
        plan = self.plan(text)
        return self.join(plan, [self._encode(piece) for piece in plan.missing])

    def plan(self, text: str) -> TokenPlan:
        """The text cut into segments, and what of it is not stored yet (nothing tokenized).

        `join(plan, tokens of plan.missing)` gives `encode(text)`: the tokenizing can run
        elsewhere (a worker thread) while the store is only touched here and in `join`.
        """
        segments = self._segments
        digest = xxhash.xxh3_64_intdigest
        keyed: list[tuple[int, str]] = []
        missing: list[str] = []
        start = parent = 0
        while True:
            cut = BOUNDARY.search(text, start + self._segment_chars)
            if cut is None:
                break
            end = cut.start()
            piece = text[start:end]
            key = digest(piece.encode("utf-8", "surrogatepass"), seed=parent)
            keyed.append((key, piece))
            if key not in segments:
                missing.append(piece)
            start, parent = end, key
        rest = text[start:]
        if rest:
            missing.append(rest)  # the unique rest (the question) is tokenized, not kept
        return TokenPlan(keyed, rest, missing)

    def join(self, plan: TokenPlan, tokenized: list[list[int]]) -> list[int]:
        """The text's ids from its plan and the tokens of `plan.missing`, in order; the new
        segments are stored. A segment evicted since the plan was made is tokenized again."""
        if len(tokenized) != len(plan.missing):
            raise ValueError(f"{len(plan.missing)} pieces were missing, {len(tokenized)} tokenized")
        fresh = dict(zip(plan.missing, tokenized, strict=True))
        segments = self._segments
        ids: list[int] = []
        for key, piece in plan.keyed:
            tokens = segments.get(key)
            if tokens is None:
                found = fresh.get(piece)
                tokens = segments[key] = tuple(found if found is not None else self._encode(piece))
                self.tokenized += 1
                if len(segments) > self._max_segments:
                    segments.popitem(last=False)
            else:
                segments.move_to_end(key)
                self.reused += 1
            ids += tokens
        if plan.rest:
            ids += tokenized[-1]  # the rest is always the last missing piece
        return ids


@dataclass(frozen=True, slots=True)
class TokenPlan:
    """A text cut into stored segments (`keyed`: each with its chain key) and its unique rest."""

    keyed: list[tuple[int, str]]
    rest: str
    missing: list[str]  # the pieces to tokenize: segments not stored when planned, then the rest

    @property
    def missing_chars(self) -> int:
        return sum(map(len, self.missing))
