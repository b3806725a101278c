"""The text of a streamed answer, and the two questions StreamScreener asks of it at each event,
answered from what the event added rather than from scratch.

The questions (their plain definitions are what main's StreamScreener computed, kept in
tests/unit/guard/stream_reference.py, and tests/unit/guard/test_stream_unchanged.py holds this
module to them):
- `tail_may_find()`: does `Screener.may_find` fire on the last STREAM_TAIL_CHARS characters?
  Trigger words (secret hints, injection words) are looked for only where one can end in the
  new text, and where each family last started is kept; the character-shape searches (digit
  runs, ID shapes, long tokens, '@') run over the tail at C speed.
- `may_block(recent)`: could `Screener.screen(recent).blocked` be True? When it could, the
  caller screens `recent` as before, so a False here is the only answer that must be exact.
  Redacting and logging checks never block, so only the blocking checks count. When those are
  only secrets checks: a secret's match lies within one line (detect-secrets analyses a text
  line by line and the extra patterns match no newline; a line's hints and long tokens are its
  own), so the recent text can block only through a line holding a hint or a long token, and
  such a line's verdict (screened on its own) is kept until the line changes.
A tail or recent text holding a letter that case-insensitive matching equates with an ASCII one
(prescan.CASE_EXOTIC) folds to a different length; for it the plain definitions are used.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from functools import cached_property

from inferpool.guard.policy import Action, Stage
from inferpool.guard.prescan import digit_runs, fold_ascii, has_alnum_id, has_case_exotic, long_tokens
from inferpool.guard.screen import Screener

# How much already-streamed text the per-event pre-scan looks at besides the new text: a match
# (a key, a card number, an injection phrase) is caught when it completes if its trigger lies
# within this tail; only then is the whole window screened.
STREAM_TAIL_CHARS = 256
# How much of the window a fired pre-scan re-screens (at most streamWindowChars): longer than
# any match the built-in detectors make, so a 4 KB window is not re-read for every token.
STREAM_SCREEN_CHARS = 1024


def _exotic(text: str) -> bool:
    return not text.isascii() and has_case_exotic(text)


class _TailTriggers:
    """The pre-scan's triggers of the tail (prescan.Triggers), for Screener.triggered."""

    def __init__(self, tail: str, hints: bool, injection: bool) -> None:
        self.tail = tail
        self.secret_hints = hints
        self.injection = injection

    @cached_property
    def numbers(self) -> bool:
        return bool(digit_runs(self.tail))

    @cached_property
    def alnum_ids(self) -> bool:
        return has_alnum_id(self.tail)

    @property
    def email(self) -> bool:
        return "@" in self.tail

    @cached_property
    def long_tokens(self) -> bool:
        return next(long_tokens(self.tail), None) is not None


class StreamedText:
    """The last `window` characters streamed, with what the per-event checks need to know of them.

    Positions are absolute (characters since the stream began); `text` starts at `end - len(text)`."""

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
        self._last_hint = -1  # where the latest secret hint starts
        self._last_injection = -1  # where the latest injection trigger word starts
        self._hints: list[tuple[int, int]] = []  # (end, start) of each secret hint, by end
        self._newlines: list[int] = []  # where each newline is
        self._line_blocks: dict[tuple[int, int], bool] = {}  # (start, end) -> its secrets verdict

    @property
    def start(self) -> int:
        return self.end - len(self.text)

    def append(self, new: str) -> None:
        was = self.end
        self.end += len(new)
        self.text = (self.text + new)[-self.window :]
        start = self.start
        if self._longest_word:
            # Every trigger word that ends in the new text starts at most this far before it.
            region = max(start, was - self._longest_word + 1)
            for family, _word, s, e in self.screener.prescanner.hits(fold_ascii(self.text[region - start :])):
                if region + e <= was:
                    continue  # ended before the new text: counted at an earlier event
                if family == "injection":
                    self._last_injection = region + s
                else:
                    self._last_hint = region + s
                    self._hints.append((region + e, region + s))
        at = new.find("\n")
        while at >= 0:
            self._newlines.append(was + at)
            at = new.find("\n", at + 1)
        if len(self._hints) + len(self._newlines) > self.window:  # forget what left the window
            self._hints = self._hints[bisect_left(self._hints, (start, -1)) :]
            self._newlines = self._newlines[bisect_left(self._newlines, start) :]
            self._line_blocks = {k: v for k, v in self._line_blocks.items() if k[0] >= start}

    def tail(self) -> str:
        return self.text[-STREAM_TAIL_CHARS:]

    def tail_may_find(self) -> bool:
        """`Screener.may_find(self.tail(), Stage.RESPONSE)`, the same answer."""
        tail = self.tail()
        if self._hooked or _exotic(tail):
            return self.screener.may_find(tail, Stage.RESPONSE)
        tail_start = self.end - len(tail)
        triggers = _TailTriggers(tail, self._last_hint >= tail_start, self._last_injection >= tail_start)
        return self.screener.triggered(triggers, Stage.RESPONSE)

    def recent(self) -> tuple[int, str]:
        """The recent complete words (up to the last space or newline, at most
        STREAM_SCREEN_CHARS), and where they start."""
        cut = max(self.text.rfind(" "), self.text.rfind("\n"))
        first = max(0, cut + 1 - STREAM_SCREEN_CHARS)
        return self.start + first, self.text[first : cut + 1]

    def may_block(self, first: int, recent: str) -> bool:
        """False only when `screener.screen(recent, Stage.RESPONSE).blocked` is surely False
        (`first, recent` as `recent()` returned them)."""
        if self._nothing_blocks:
            return False
        if not self._by_lines or _exotic(recent):
            return True
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
            text = self.text[line[0] - self.start : line[1] - self.start]
            verdict = bool(self.screener.findings(text, Stage.RESPONSE, Action.BLOCK))
            self._line_blocks[line] = verdict
        return verdict
