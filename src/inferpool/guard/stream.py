"""The text of a streamed answer, and the two questions StreamScreener asks of it at each event,
answered from what the event added rather than from scratch.

The questions (their plain definitions are what main's StreamScreener computed, kept in
tests/unit/guard/stream_reference.py; tests/unit/guard/test_stream_unchanged.py holds this
module to them):
- `tail_may_find()`: does `Screener.may_find` fire on the last STREAM_TAIL_CHARS characters?
  Trigger words (secret hints, injection words) are looked for only where one can end in the
  new text, and where each family last started is kept; so is where the last digit run, ID
  shape and long token found in a tail start, and while that is still in the tail it is not
  searched for again. '@' and the other shapes are searched in the tail (C speed).
- `may_block(start, recent)`: could `Screener.screen(recent).blocked` be True? When it could,
  the caller screens `recent` as before, so only a False here must be exact. Redacting and
  logging checks never block, so only the blocking checks count. When those are secrets checks
  only, a match lies within one line (detect-secrets analyses a text line by line, the extra
  patterns match no newline, and a line's hints and long tokens are its own), so the recent
  text blocks iff one of its lines (the first and last clipped to it) holding a hint or a long
  token does on its own; a line's verdict is kept until the line changes.
A tail or recent text holding a letter that case-insensitive matching equates with an ASCII one
(prescan.CASE_EXOTIC) folds to a different length: for it the plain definitions are used; one
holding a non-ASCII digit has its digit shapes searched by the regular expressions themselves.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable

from inferpool.guard.policy import Action, Stage
from inferpool.guard.prescan import (
    ALNUM_ID,
    DIGIT_RUN,
    ascii_chars,
    fold_ascii,
    has_case_exotic,
    last_alnum_id,
    last_digit_run,
    last_long_token,
    long_tokens,
    unicode_digits,
)
from inferpool.guard.screen import Screener

# How much already-streamed text the per-event pre-scan looks at besides the new text: a match
# (a key, a card number, an injection phrase) is caught when it completes if its trigger lies
# within this tail; only then is the whole window screened.
STREAM_TAIL_CHARS = 256
# How much of the window a fired pre-scan re-screens (at most streamWindowChars): longer than
# any match the built-in detectors make, so a 4 KB window is not re-read for every token.
STREAM_SCREEN_CHARS = 1024


class _TailTriggers:
    """The pre-scan's triggers of the tail (prescan.Triggers), each found when first asked for."""

    def __init__(self, streamed: StreamedText, tail: str, start: int) -> None:
        self._streamed = streamed
        self._tail = tail
        self._start = start  # where the tail starts
        self._chars = b""
        self.secret_hints = streamed.last_hint >= start
        self.injection = streamed.last_injection >= start

    @property
    def email(self) -> bool:
        return "@" in self._tail

    @property
    def numbers(self) -> bool:
        if self._streamed.last_odd_digit >= self._start:
            return DIGIT_RUN.search(self._tail) is not None
        return self._shape(0, last_digit_run)

    @property
    def alnum_ids(self) -> bool:
        if self._streamed.last_odd_digit >= self._start:
            return ALNUM_ID.search(self._tail) is not None
        return self._shape(1, last_alnum_id)

    @property
    def long_tokens(self) -> bool:
        return self._shape(2, last_long_token)

    def _shape(self, which: int, last_start: Callable[[bytes], int]) -> bool:
        seen = self._streamed.shapes_seen
        if seen[which] >= self._start:
            return True  # the match found at an earlier event is still in the tail
        if not self._chars:
            self._chars = ascii_chars(self._tail)
        at = last_start(self._chars)
        if at < 0:
            return False
        seen[which] = self._start + at
        return True


class StreamedText:
    """The last `window` characters streamed, with what the per-event checks need to know of them.

    Positions are absolute (characters since the stream began); `text` starts at `start`."""

    def __init__(self, screener: Screener, window: int) -> None:
        self.screener = screener
        self.window = window
        self.text = ""
        self.end = 0
        config = screener.config
        self._hooked = config.hook is not None and Stage.RESPONSE in config.hook.stages
        blocking = {c.check for c in config.checks if Stage.RESPONSE in c.stages and c.action is Action.BLOCK}
        self._nothing_blocks = not blocking and not self._hooked
        # Only secrets checks block: a recent text blocks through one of its lines (module doc).
        self._by_lines = blocking == {"secrets"} and not self._hooked
        self._longest_word = screener.prescanner.longest_word
        self.last_hint = -1  # where the latest secret hint starts
        self.last_injection = -1  # where the latest injection trigger word starts
        self.last_exotic = -1  # where the latest prescan.CASE_EXOTIC letter is
        self.last_odd_digit = -1  # where the latest non-ASCII digit is
        self.shapes_seen = [-1, -1, -1]  # where a digit run, an ID shape, a long token last started
        self._last_space = -1  # the last space or newline
        self._hints: list[tuple[int, int]] = []  # (end, start) of each secret hint, by end
        self._newlines: list[int] = []
        self._line_blocks: dict[tuple[int, int], bool] = {}  # (start, end) -> its verdict

    @property
    def start(self) -> int:
        return self.end - len(self.text)

    def append(self, new: str) -> None:
        was = self.end
        self.end += len(new)
        self.text = (self.text + new)[-self.window :]
        start = self.end - len(self.text)
        if not new.isascii():
            if has_case_exotic(new):
                self.last_exotic = was + max(new.rfind(c) for c in "\u0130\u0131\u017f\u212a")
            if unicode_digits(new):
                self.last_odd_digit = self.end - 1  # at most this far on; enough for "in the tail"
        if self._longest_word:
            # Every trigger word that ends in the new text starts at most this far before it.
            region = max(start, was - self._longest_word + 1)
            for last, (family, _word, length) in self.screener.prescanner.hits(
                fold_ascii(self.text[region - start :])
            ):
                if region + last < was:
                    continue  # ended before the new text: counted at an earlier event
                if family == "injection":
                    self.last_injection = region + last + 1 - length
                else:
                    self.last_hint = region + last + 1 - length
                    self._hints.append((region + last + 1, self.last_hint))
        cut = max(new.rfind(" "), new.rfind("\n"))
        if cut >= 0:
            self._last_space = was + cut
            if "\n" in new:
                at = new.find("\n")
                while at >= 0:
                    self._newlines.append(was + at)
                    at = new.find("\n", at + 1)
        if len(self._hints) + len(self._newlines) > self.window:  # forget what left the window
            self._hints = self._hints[bisect_left(self._hints, (start, -1)) :]
            self._newlines = self._newlines[bisect_left(self._newlines, start) :]
            self._line_blocks = {k: v for k, v in self._line_blocks.items() if k[0] >= start}

    def tail_may_find(self) -> bool:
        """`Screener.may_find(self.text[-STREAM_TAIL_CHARS:], Stage.RESPONSE)`, the same answer."""
        tail = self.text[-STREAM_TAIL_CHARS:]
        tail_start = self.end - len(tail)
        if self._hooked or self.last_exotic >= tail_start:
            return self.screener.may_find(tail, Stage.RESPONSE)
        return self.screener.triggered(_TailTriggers(self, tail, tail_start), Stage.RESPONSE)

    def recent(self) -> tuple[int, str]:
        """The recent complete words (up to the last space or newline, at most
        STREAM_SCREEN_CHARS), and where they start."""
        start = self.end - len(self.text)
        cut = self._last_space - start if self._last_space >= start else -1
        first = max(0, cut + 1 - STREAM_SCREEN_CHARS)
        return start + first, self.text[first : cut + 1]

    def may_block(self, first: int, recent: str) -> bool:
        """False only when `screener.screen(recent, Stage.RESPONSE).blocked` is surely False
        (`first, recent` as `recent()` returned them)."""
        if self._nothing_blocks:
            return False
        if not self._by_lines or self.last_exotic >= first:
            return True  # (or the exotic letter is past the recent text: screening it is exact too)
        last = first + len(recent)
        # The lines (clipped to the recent text) holding a hint or a long token.
        hints = self._hints
        starts = [s for e, s in hints[bisect_left(hints, (first, -1)) :] if s >= first and e <= last]
        starts += [first + s for s, _ in long_tokens(recent)]
        return any(self._line_blocks_at(position, first, last) for position in starts)

    def _line_blocks_at(self, position: int, first: int, last: int) -> bool:
        """The blocking checks' verdict on the line holding `position`, clipped to [first, last)."""
        newlines = self._newlines
        k = bisect_right(newlines, position)
        line = (
            max(first, newlines[k - 1] + 1) if k else first,
            min(last, newlines[k]) if k < len(newlines) else last,
        )
        verdict = self._line_blocks.get(line)
        if verdict is None:
            start = self.end - len(self.text)
            text = self.text[line[0] - start : line[1] - start]
            verdict = bool(self.screener.findings(text, Stage.RESPONSE, Action.BLOCK))
            self._line_blocks[line] = verdict
        return verdict
