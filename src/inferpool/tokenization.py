"""A deterministic built-in tokenizer: about four characters per token, no files to download.

Text is split into words (with their leading space); a word of up to six characters is one
token, a longer one is cut into four-character pieces; a piece's id is a stable hash into a Llama-3-sized vocabulary. The same text always
gives the same ids, so prefix caching behaves as it would with a real tokenizer.

A leaf module: the simulator tokenizes with it and the precise-prefix scorer must tokenize
exactly as the simulator does, so it lives below both rather than inside either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import xxhash

VOCAB_SIZE = 128256
UNK_ID = 0
BOS_ID = 1
EOS_ID = 2
_FIRST_ID = 3
_PIECE_CHARS = 4
_WHOLE_WORD_CHARS = 6
_MAX_MEMO = 1_000_000
_MAX_WORD_MEMO = 200_000
_WORD = re.compile(r"\s*\S+|\s+")

# Words the simulated model "writes"; ids for these are always decodable.
_VOCABULARY = (
    "the of and to in is that for it as with was on be by this are from at or an have not which "
    "but all they one can has more will their there about model data time use when would what some "
    "them into other than then these two its first also new could only way may any like such most "
    "well after where very should through because each between make many does over same both under "
    "answer system request token server cache value result using example simple state order input "
    "output review recipe flavor kitchen design part layer route pool queue batch prompt reply"
).split()


class Tokenizer:
    """Encodes and decodes text; remembers which piece each id stands for."""

    def __init__(self, *, remember_pieces: bool = True) -> None:
        """`remember_pieces=False` for encode-only users (the gateway): no memo to decode with."""
        self._pieces: dict[int, str] = {BOS_ID: "<s>", EOS_ID: "</s>", UNK_ID: "<unk>"}
        self._memo_limit = _MAX_MEMO if remember_pieces else 0
        self._word_ids: dict[str, list[int]] = {}  # words recur: hash each one once
        self.words: tuple[tuple[int, ...], ...] = tuple(tuple(self._piece_ids(" " + w)) for w in _VOCABULARY)

    def encode(self, text: str, *, add_bos: bool = True) -> list[int]:
        ids = [BOS_ID] if add_bos else []
        known = self._word_ids
        for word in _WORD.findall(text):
            word_ids = known.get(word)
            if word_ids is None:
                if len(known) >= _MAX_WORD_MEMO:
                    known.clear()
                word_ids = known[word] = self._piece_ids(word)
            ids.extend(word_ids)
        return ids

    def decode(self, ids: Iterable[int], *, skip_special: bool = False) -> str:
        out = []
        for i in ids:
            if skip_special and i in (BOS_ID, EOS_ID, UNK_ID):
                continue
            out.append(self._pieces.get(i, ""))
        return "".join(out)

    def piece(self, token_id: int) -> str:
        """Text of one generated token; special and unknown ids decode to ''."""
        if token_id in (BOS_ID, EOS_ID, UNK_ID):
            return ""
        return self._pieces.get(token_id, "")

    def apply_chat_template(self, messages: Sequence[tuple[str, str]]) -> str:
        """Flatten messages as "role: content" lines and open the assistant turn."""
        return "".join(f"{role}: {content}\n" for role, content in messages) + "assistant:"

    def _piece_ids(self, word: str) -> list[int]:
        ids = []
        step = len(word) if len(word) <= _WHOLE_WORD_CHARS else _PIECE_CHARS
        for start in range(0, len(word), step):
            piece = word[start : start + step]
            token_id = _FIRST_ID + xxhash.xxh3_64_intdigest(piece.encode("utf-8")) % (VOCAB_SIZE - _FIRST_ID)
            if len(self._pieces) < self._memo_limit:
                self._pieces.setdefault(token_id, piece)
            ids.append(token_id)
        return ids


def content_text(content: object) -> str:
    """A chat message's text as the chat template sees it: the string, or its text parts joined.

    Takes raw JSON (dicts) or validated parts (objects with `type` and `text`), so the sim's
    chat endpoint and the gateway's precise prefix scorer render a message the same way.
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content:
        text = _field(part, "text")
        if _field(part, "type") == "text" and isinstance(text, str):
            texts.append(text)
    return "".join(texts)


def _field(part: object, name: str) -> object:
    return part.get(name) if isinstance(part, Mapping) else getattr(part, name, None)
