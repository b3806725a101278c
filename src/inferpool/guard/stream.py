"""The text of a streamed answer, and the two questions StreamScreener asks of it at each event,
answered from what the event added rather than from scratch.

The questions (their plain definitions are what main's StreamScreener computed, kept in
tests/unit/guard/stream_reference.py; tests/unit/guard/test_stream_unchanged.py holds this
module to them):
- `tail_may_find()`: does `Screener.may_find` fire on the new text and the STREAM_TAIL_CHARS
  before it? (An event longer than that is pre-scanned whole, with the tail before it.)
  Trigger words (secret hints, injection words) are looked for only where one can end in the
  new text, and where each family last started is kept. After a tail in which nothing fired,
  the next tail's older part holds no trigger either, so only one ending in the new text is
  looked for ('@' or a digit in it, a token run reaching LONG_TOKEN_CHARS, the end of an
  obfuscated address's marker while an "at" word of one is in the tail; a tail holding an escape
  is pre-scanned whole). Otherwise the
  shapes are searched in the tail (C speed). Where the trigger a tail fired on starts is kept:
  while that trigger is still in the tail, the tail fires without being looked at again.
- `may_block(first, recent)`: could `Screener.screen(recent).blocked` be True? When it could,
  the caller screens `recent` as before, so only a False here must be exact. Redacting and
  logging checks never block, so only the blocking checks count. When those are secrets checks
  only, a match lies within one line (detect-secrets analyses a text line by line, the extra
  patterns match no newline, and a line's hints and long tokens are its own), so the recent
  text blocks iff one of its lines (the first and last clipped to it) holding a hint or a long
  token does on its own, unless a base64 block may be wrapped over lines (the check decodes it
  whole): then it is screened whole. A line's verdict is kept; lines a passed recent text held whole pass
  in the next one too, so only its cut first line and the lines from where the passed one
  ended are looked at.
A tail or recent text holding a letter that case-insensitive matching equates with an ASCII one
(prescan.CASE_EXOTIC) folds to a different length: for it the plain definitions are used; one
holding a non-ASCII digit has its digit shapes searched by the regular expressions themselves.
Where injection words count, so is a tail that may hide a phrase (a non-ASCII character, a tab,
two spaces: guard/disguise.py), which the per-event automaton would not read as the pre-scan
does. A tail holding a disguise (disguise.disguises) fires the secrets and PII checks, as the
pre-scan of a whole text does (they read it undisguised), and a recent text holding one (or an
escape) is screened whole, not line by line: a key in full-width letters, or percent-encoded,
has no trigger as written.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable

from inferpool.guard.disguise import ESCAPE_EXPRESSIONS, disguises, last_disguise
from inferpool.guard.policy import Action, Stage
from inferpool.guard.prescan import (
    ALNUM_ID,
    ANY_DIGIT,
    CASE_EXOTIC,
    CIPHER_FAMILIES,
    DIGIT_RUN,
    LONG_TOKEN_CHARS,
    SPELLED_WORDS,
    ascii_chars,
    fold_ascii,
    has_case_exotic,
    last_alnum_id,
    last_digit_run,
    last_long_token,
    long_tokens,
    may_hold_obfuscated_email,
    spelled_words,
    token_breaks,
)
from inferpool.guard.screen import Screener

# How much already-streamed text the per-event pre-scan looks at besides the new text: a match
# (a key, a card number, an injection phrase) is caught when it completes if its trigger lies
# within this tail; only then is the whole window screened.
STREAM_TAIL_CHARS = 256
# How much of the window a fired pre-scan re-screens (at most streamWindowChars): longer than
# any match the built-in detectors make, so a 4 KB window is not re-read for every token.
STREAM_SCREEN_CHARS = 1024
# What a trigger word spelled to hide it holds (prescan.spelled_words): a character leetspeak
# writes for a letter, or two letters apart (disguise.APART), within SPELLED_REACH of its end
_SPELLING = re.compile(r"[0-9@$!|]|(?<![A-Za-z0-9])[A-Za-z][ .\-_*/+~|][A-Za-z](?![A-Za-z0-9])")
SPELLED_REACH = 2 * max(map(len, SPELLED_WORDS))
# The word "at" of an address written to hide it ("jane [at] gmail [dot] com", "j.doe at example
# dot com"): every marker of one (disguise.OBFUSCATED_EMAIL_EXPRESSIONS) holds it so, or an '@'
_AT_WORD = re.compile(r"[ \[({<][aA][tT][ \])}>]")
# What such a marker ends in: a closing bracket or a dot, or the word "dot" and a space or letter
_MARKER_END = re.compile(r"[.\])}>]|[dD][oO][tT]")
# An escape as the pre-scan looks for one in a long text (disguise.ESCAPE_EXPRESSIONS, over the
# fold: in any case), which also holds every one a short text's check finds (ESCAPE_TRIGGER). At
# most 16 characters, each with one of _ESCAPE_LEADS within its last 15 (quoted-printable's is
# its "q": with its "-", logs, full of dates and ids, ran this search at one event in three).
_ESCAPE = re.compile("|".join(ESCAPE_EXPRESSIONS), re.IGNORECASE)
_ESCAPE_LEADS = ("%", "&", "\\", "=", "q", "Q")
_ESCAPE_REACH = 15
_UNKNOWN = 1 << 62  # a position past any stream's end
# Read per streamed event (here and by openai.StreamScreener): an enum member lookup costs ≈0.2 µs on a slow VM
ANSWER_STAGE = Stage.RESPONSE


class _TailTriggers:
    """The pre-scan's triggers of the tail (prescan.Triggers), each found when first asked for.

    `new`: the text this event added, when no trigger lies wholly in the tail before it (then
    only one that ends in `new` can be there), else None. `fired_from`: where the latest trigger
    found starts (for a long token run: where its last LONG_TOKEN_CHARS start), -1 if none: the
    plain pre-scan of any later tail that starts at or before it still holds that trigger."""

    def __init__(self, streamed: StreamedText, start: int, new: str | None) -> None:
        self._streamed = streamed
        self._start = start  # where the tail starts
        self._new = new
        self._tail: str | None = None
        self._chars = b""
        self.fired_from = -1

    def _found(self, at: int) -> bool:
        if at < self._start:
            return False
        self.fired_from = max(self.fired_from, at)
        return True

    @property
    def tail(self) -> str:
        if self._tail is None:
            self._tail = self._streamed.between(self._start, self._streamed.end)
        return self._tail

    @property
    def secret_hints(self) -> bool:
        return self._found(self._streamed.last_hint)

    @property
    def injection(self) -> bool:
        # A trigger word, or one spelled to hide it (leetspeak, letters apart: looked for in the
        # tail, as the pre-scan of a prompt does; a later tail that starts where this one does
        # or before holds it too). (A tail that may hold one in ROT13 or backwards, or a run
        # that decodes from base64 or hex, is pre-scanned whole: StreamedText.tail_may_find.)
        return self._found(self._streamed.last_injection) or (
            spelled_words(self.tail) != 0 and self._found(self._start)
        )

    @property
    def disguised(self) -> bool:
        return self._found(self._streamed.last_disguised)

    @property
    def escaped(self) -> bool:
        return False  # (a tail holding an escape is pre-scanned whole: StreamedText.tail_may_find)

    @property
    def obfuscated_email(self) -> bool:
        # A marker of an obfuscated address holds an "at" word (StreamedText.last_at_word), and
        # one that ends in the new text ends in a closing bracket, a dot or "dot" (the text's
        # compiled-pass markers, asked of the tail only then: prose says "at" often)
        streamed = self._streamed
        if streamed.last_at_word < self._start:
            return False
        if self._new is not None and not streamed.may_end_obfuscated():
            return False
        return may_hold_obfuscated_email(fold_ascii(self.tail)) and self._found(self._start)

    @property
    def email(self) -> bool:
        return self._found(self._streamed.last_at)

    @property
    def numbers(self) -> bool:
        return self._digit_shape(DIGIT_RUN, last_digit_run)

    @property
    def alnum_ids(self) -> bool:
        return self._digit_shape(ALNUM_ID, last_alnum_id)

    def _digit_shape(self, pattern: re.Pattern[str], last: Callable[[bytes], int]) -> bool:
        """A digit run or an ID shape (both end in a digit): none can end in new text without one;
        a non-ASCII digit in the tail needs the regular expression itself."""
        if self._new is not None and not ANY_DIGIT.search(self._new):
            return False
        if self._streamed.last_odd_digit >= self._start:
            match = pattern.search(self.tail)
            return match is not None and self._found(self._start + match.start())
        return self._shape(last)

    @property
    def long_tokens(self) -> bool:
        if self._new is not None:
            return self._found(self._streamed.long_run_in_new(self._start))
        return self._shape(last_long_token)

    def _shape(self, last_start: Callable[[bytes], int]) -> bool:
        if not self._chars:
            self._chars = ascii_chars(self.tail)
        at = last_start(self._chars)
        return at >= 0 and self._found(self._start + at)


class StreamedText:
    """The last `window` characters streamed, with what the per-event checks need to know of them.

    Positions are absolute (characters since the stream began)."""

    def __init__(self, screener: Screener, window: int) -> None:
        self.screener = screener
        self.window = window
        self.end = 0
        # The text from `_buf_start` on: the last `window` characters and up to as many before
        # (trimmed now and then, so an event appends in place instead of copying the window).
        self._buf = ""
        self._buf_start = 0
        checks = screener.answer_checks
        # (the hook screens a stream's text in steps of its own: openai.StreamScreener; the
        # questions here are about the built-in checks)
        self._hooked = checks.hooked
        self._nothing_blocks = not checks.blocking
        # Only secrets checks block: a recent text blocks through one of its lines (module doc).
        self._by_lines = checks.blocking == {"secrets"}
        self._longest_word = screener.prescanner.longest_word
        self._word_hits = screener.prescanner.hits
        self.last_hint = -1  # where the latest secret hint starts
        self.last_injection = -1  # where the latest injection trigger word starts
        self.last_cipher = -1  # where the latest one in ROT13 or backwards may start
        self.last_exotic = -1  # where the latest prescan.CASE_EXOTIC letter is
        # At or after the latest character that may disguise an injection phrase (a non-ASCII
        # one, a tab, a second space; see guard/disguise.py), where injection words count
        self.last_unusual = -1
        # Where the latest disguise starts (disguise.last_disguise: an invisible character,
        # full-width or mathematical letters, tag characters, a lookalike next to a Latin
        # letter, a combining mark on an ASCII character)
        self.last_disguised = -1
        self.last_odd_digit = -1  # at or after the latest non-ASCII digit
        self.last_at = -1  # where the latest '@' is
        self.last_at_word = -1  # where the latest "at" word of an obfuscated address may be (_AT_WORD)
        self.last_escape = -1  # where the latest escape starts (_ESCAPE)
        self._last_escape_lead = -1  # where the latest of _ESCAPE_LEADS is
        self._last_space = -1  # the last space or newline
        self._hints: list[tuple[int, int]] = []  # (end, start) of each secret hint, by end
        self._runs: list[tuple[int, int]] = []  # (end, start) of each ended long-token run, by end
        self._run_start = 0  # where the token run the text ends in starts
        # (end, start) of each ended run that may be a line of a wrapped base64 block (_note_wrapped)
        self._wrapped: list[tuple[int, int]] = []
        self._newlines: list[int] = []
        self._line_blocks: dict[tuple[int, int], bool] = {}  # (start, end) -> its verdict
        # A recent text every line of which (clipped to it) the blocking checks passed.
        self._clean: tuple[int, int] | None = None
        self._new = ""  # the text the last event added
        # That text and the tail before it, when the event was longer than the tail (it is
        # pre-scanned and its words screened whole); None for an ordinary event.
        self.long_text: str | None = None
        self._was = 0  # where it starts
        # No trigger lies wholly in the text from here to `_was` (_UNKNOWN: not known).
        self._quiet_from = _UNKNOWN
        # Where the latest trigger the tail fired on starts: while the tail starts at or before
        # it, that trigger is still in the tail, so the tail fires (_TailTriggers.fired_from).
        self._fired_from = -1
        self._fires_untriggered = checks.fires_untriggered
        self._injection_counts = checks.injection_counts
        self._obfuscated_counts = checks.obfuscated_counts
        self._escapes_count = checks.escapes_count

    @property
    def can_block(self) -> bool:
        """Whether any check (or the hook) can block an answer."""
        return not self._nothing_blocks or self._hooked

    @property
    def words_end(self) -> int:
        """Where the complete words end (after the last space or newline; 0 before any)."""
        return self._last_space + 1

    @property
    def window_start(self) -> int:
        return max(self._buf_start, self.end - self.window)

    @property
    def text(self) -> str:
        """The last `window` characters."""
        return self._buf[self.window_start - self._buf_start :]

    def between(self, start: int, end: int) -> str:
        return self._buf[start - self._buf_start : end - self._buf_start]

    def append(self, new: str) -> None:
        was = self._was = self.end
        self._new = new
        # An event longer than the tail is pre-scanned whole with the tail before it (the tail
        # alone would miss its start); kept now, before the buffer may drop what precedes it.
        self.long_text = self.text[-STREAM_TAIL_CHARS:] + new if len(new) > STREAM_TAIL_CHARS else None
        end = self.end = was + len(new)
        buf, self._buf = self._buf, ""
        buf += new  # in place: `buf` is the only reference
        if len(buf) > 2 * self.window:
            buf = buf[-self.window :]
            self._forget_before(end - len(buf))
        self._buf = buf
        buf_start = self._buf_start
        is_ascii = new.isascii()
        # The new text and the character before it (a lookalike next to a Latin letter may
        # straddle two events): one pass over it when it holds a non-ASCII character
        piece_start = max(buf_start, was - 1)
        piece = buf[piece_start - buf_start :]
        if not piece.isascii():
            disguise, _spaces, _invisible, odd_digit, _foreign = disguises(piece)
            if disguise:
                self.last_disguised = max(self.last_disguised, piece_start + last_disguise(piece))
            if odd_digit:
                self.last_odd_digit = end - 1
            if not is_ascii and has_case_exotic(new):
                self.last_exotic = was + max(new.rfind(c) for c in CASE_EXOTIC)
        if self._injection_counts and (
            not is_ascii
            or "\t" in new
            or "\x0b" in new
            or "\x0c" in new
            or "  " in buf[max(0, was - 1 - buf_start) :]
        ):
            self.last_unusual = end - 1  # (the pre-scan of a tail holding it decides: tail_may_find)
        if self._longest_word:
            # Every trigger word that ends in the new text starts at most this far before it.
            region = max(buf_start, end - self.window, was - self._longest_word + 1)
            for last, (family, _word, length) in self._word_hits(fold_ascii(buf[region - buf_start :])):
                if region + last < was:
                    continue  # ended before the new text: counted at an earlier event
                if family == "injection":
                    self.last_injection = region + last + 1 - length
                elif family in CIPHER_FAMILIES:
                    # (whether it stands at a word's edge the pre-scan of the tail decides)
                    self.last_cipher = region + last + 1 - length
                else:
                    self.last_hint = region + last + 1 - length
                    self._hints.append((region + last + 1, self.last_hint))
        if self._escapes_count:
            # (before the return below: an escape may end in letters or digits. One that ends
            # in the new text has a lead within its last _ESCAPE_REACH characters: in the new
            # text, or noted at an earlier event)
            if "%" in new or "&" in new or "\\" in new or "=" in new or "q" in new or "Q" in new:
                self._last_escape_lead = was + max(map(new.rfind, _ESCAPE_LEADS))
            if self._last_escape_lead >= was - _ESCAPE_REACH:
                found = _ESCAPE.search(buf, max(0, was - _ESCAPE_REACH - buf_start))
                while found is not None:
                    self.last_escape = buf_start + found.start()
                    found = _ESCAPE.search(buf, found.start() + 1)
        if is_ascii and new.isalnum():
            return  # letters and digits only (most tokens inside a word): no run, space or '@' ends
        first_break, last_break = token_breaks(new)
        if first_break < 0:
            return
        runs_before = len(self._runs)
        if was + first_break - self._run_start >= LONG_TOKEN_CHARS:
            self._runs.append((was + first_break, self._run_start))
        if last_break - first_break > LONG_TOKEN_CHARS:
            inner = new[first_break + 1 : last_break]
            self._runs += [
                (was + first_break + 1 + e, was + first_break + 1 + s) for s, e in long_tokens(inner)
            ]
        self._run_start = was + last_break + 1
        if len(self._runs) > runs_before:
            self._note_wrapped(runs_before)
        # '@', a space and a newline each end a token run: none is in a text without a break
        if "@" in new:
            self.last_at = was + new.rfind("@")
        if self._obfuscated_counts and (
            "t" in new or "T" in new or (was > buf_start and buf[was - 1 - buf_start] in "tT")
        ):
            # (an "at" word that ends in the new text starts at most 3 characters before it, and
            # its "t" is in the new text or just before it)
            found = _AT_WORD.search(buf, max(0, was - 3 - buf_start))
            while found is not None:
                self.last_at_word = buf_start + found.start()
                found = _AT_WORD.search(buf, found.start() + 1)
        cut = max(new.rfind(" "), new.rfind("\n"))
        if cut >= 0:
            self._last_space = was + cut
            if "\n" in new:
                at = new.find("\n")
                while at >= 0:
                    self._newlines.append(was + at)
                    at = new.find("\n", at + 1)

    def _forget_before(self, start: int) -> None:
        self._buf_start = start
        self._hints = self._hints[bisect_left(self._hints, (start, -1)) :]
        self._runs = self._runs[bisect_left(self._runs, (start, -1)) :]
        self._wrapped = self._wrapped[bisect_left(self._wrapped, (start, -1)) :]
        self._newlines = self._newlines[bisect_left(self._newlines, start) :]
        self._line_blocks = {k: v for k, v in self._line_blocks.items() if k[0] >= start}

    def _may_end_spelled(self, tail_start: int, added: int) -> bool:
        """Whether a trigger word spelled to hide it (prescan.spelled_words) may end in the last
        `added` characters: a substitute or two letters apart near enough before their end."""
        near = self.between(max(tail_start, self.end - added - SPELLED_REACH), self.end)
        return _SPELLING.search(near) is not None

    def may_end_obfuscated(self) -> bool:
        """Whether a marker of an obfuscated address may end in the last event's text: a closing
        bracket or a dot in it, or the word "dot" reaching into it (its space, or the letter after
        that: "dot" then starts 4 characters before the new text)."""
        return _MARKER_END.search(self._buf, max(0, self._was - 4 - self._buf_start)) is not None

    def tail_may_find(self) -> bool:
        """`Screener.may_find` on the last event's text and the STREAM_TAIL_CHARS before it, for
        the built-in checks (the hook is asked in steps: openai.StreamScreener)."""
        if self.long_text is not None:
            self._quiet_from = _UNKNOWN
            return self.screener.fires(self.long_text, Stage.RESPONSE)
        tail_start = max(self._buf_start, self.end - min(self.window, STREAM_TAIL_CHARS))
        if (
            self.last_exotic >= tail_start
            or self.last_unusual >= tail_start
            or (
                self._injection_counts
                and (self.last_cipher >= tail_start or self._long_run_in_tail(tail_start))
            )
            or (self._escapes_count and self.last_escape >= tail_start)
        ):
            # (where injection words count, a trigger word in ROT13 or backwards and a run that
            # may decode from base64 or hex are the pre-scan's to judge: more text can take a
            # word's edge away, and the tail's start a run's alignment; and an escape, which
            # the pre-scan reads by the text's length)
            self._quiet_from = _UNKNOWN
            return self.screener.fires(self.between(tail_start, self.end), Stage.RESPONSE)
        if self._fired_from >= tail_start:
            self._quiet_from = _UNKNOWN
            return True  # a trigger found at an earlier event is still in the tail
        new: str | None = None
        if self._quiet_from <= tail_start:
            new = self._new
            # The common event: no trigger in the tail before it, and none (no '@', hint or
            # injection word, digit, long token run) in what it added.
            if (
                not self._fires_untriggered
                and self.last_at < tail_start
                and self.last_hint < tail_start
                and self.last_disguised < tail_start
                and (
                    (self.last_injection < tail_start and self.last_cipher < tail_start)
                    or not self._injection_counts
                )
                and not ANY_DIGIT.search(new)
                and not (self._injection_counts and self._may_end_spelled(tail_start, len(new)))
                and (self.last_at_word < tail_start or not self.may_end_obfuscated())
                and self.long_run_in_new(tail_start) < 0
            ):
                self._quiet_from = tail_start
                return False
        triggers = _TailTriggers(self, tail_start, new)
        if self.screener.triggered(triggers, ANSWER_STAGE):
            self._fired_from = max(self._fired_from, triggers.fired_from)
            self._quiet_from = _UNKNOWN
            return True
        self._quiet_from = tail_start
        return False

    def _long_run_in_tail(self, tail_start: int) -> bool:
        """Whether the tail from `tail_start` holds LONG_TOKEN_CHARS of a token run."""
        if self.end - max(self._run_start, tail_start) >= LONG_TOKEN_CHARS:
            return True
        runs = self._runs
        at = len(runs) - 1
        while at >= 0 and runs[at][0] > tail_start:
            if runs[at][0] - max(runs[at][1], tail_start) >= LONG_TOKEN_CHARS:
                return True
            at -= 1
        return False

    def long_run_in_new(self, tail_start: int) -> int:
        """Where the last LONG_TOKEN_CHARS of a token run that ends in the last event's text
        start, if the tail holds that many of it; -1 if none does."""
        if self.end == self._was:
            return -1
        if self.end - max(self._run_start, tail_start) >= LONG_TOKEN_CHARS:
            return self.end - LONG_TOKEN_CHARS
        runs = self._runs
        at = len(runs) - 1
        while at >= 0 and runs[at][0] > self._was:
            if runs[at][0] - max(runs[at][1], tail_start) >= LONG_TOKEN_CHARS:
                return runs[at][0] - LONG_TOKEN_CHARS
            at -= 1
        return -1

    def recent_span(self) -> tuple[int, int]:
        """Where the recent complete words (up to the last space or newline, at most
        STREAM_SCREEN_CHARS) start and end."""
        start = max(self._buf_start, self.end - self.window)  # window_start, without a call
        end = self._last_space + 1 if self._last_space >= start else start
        return max(start, end - STREAM_SCREEN_CHARS), end

    def may_block(self, first: int, recent: str) -> bool:
        """False only when `screener.screen(recent, Stage.RESPONSE).blocked` is surely False
        (`recent` the text from `first` to where `recent_span()` ends)."""
        if self._nothing_blocks:
            return False
        if (
            not self._by_lines
            or self.last_exotic >= first
            or self.last_disguised >= first
            or self.last_escape >= first
        ):
            # (or the exotic letter or disguise is past the recent text: screening it is exact
            # too); a line in disguise, or escaped, may block with no trigger as written
            return True
        if self._wrapped and self._wrapped_run(first, first + len(recent)):
            return True  # the secrets check decodes a wrapped base64 block whole, not by lines
        last = first + len(recent)
        newlines = self._newlines
        # Lines the clean recent text held whole are passed: only the line `first` cuts, and
        # those from the line the clean text ended in, can block.
        ranges = [(first, last)]
        if self._clean is not None:
            k = bisect_left(newlines, first)
            first_line_end = newlines[k] if k < len(newlines) else last
            k = bisect_left(newlines, self._clean[1]) - 1
            ranges = [(first, first_line_end), (max(first, newlines[k] + 1 if k >= 0 else first), last)]
        for a, b in ranges:
            for position in self._triggers(a, b):
                if self._line_blocks_at(position, first, last):
                    return True
        self._clean = (first, last)
        return False

    def _note_wrapped(self, first: int) -> None:
        """Keep the runs from `_runs[first]` on (just ended) that end at a line break and may go
        on in the next line as base64 does when wrapped (disguise.encoded_runs joins such lines):
        as wide as MIME's or PEM's lines (64 or 76: a short last line may follow), or followed
        right after the break by the next run, which keeps the one before it."""
        runs, buf, buf_start, wrapped = self._runs, self._buf, self._buf_start, self._wrapped
        for at in range(first, len(runs)):
            end, start = runs[at]
            if end < buf_start:
                continue  # (an event longer than the buffer: its start is gone, and out of the window)
            if at:
                previous = runs[at - 1]
                if (
                    start - previous[0] in (1, 2)
                    and previous[0] >= buf_start
                    and buf[previous[0] - buf_start] in "\r\n"
                    and (not wrapped or wrapped[-1] != previous)
                ):
                    wrapped.append(previous)
            if end - start >= 64 and buf[end - buf_start] in "\r\n":
                wrapped.append(runs[at])

    def _wrapped_run(self, a: int, b: int) -> bool:
        """Whether a run of `_note_wrapped` lies in [a, b)."""
        wrapped = self._wrapped
        at = bisect_right(wrapped, (a, a))
        return at < len(wrapped) and wrapped[at][0] < b  # (sorted by end; each starts before it)

    def _triggers(self, a: int, b: int) -> list[int]:
        """A place in [a, b) of each secret hint and long-token run that reaches into it."""
        places = []
        hints = self._hints
        for end, start in hints[bisect_right(hints, (a, a)) :]:
            if start < b:
                places.append(max(a, start))
            elif end > b + self._longest_word:
                break
        runs = self._runs
        for _end, start in runs[bisect_right(runs, (a, a)) :]:
            if start >= b:
                break
            places.append(max(a, start))
        return places

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
            verdict = bool(self.screener.findings(self.between(*line), Stage.RESPONSE, Action.BLOCK))
            self._line_blocks[line] = verdict
        return verdict
