"""Where the text is in inference bodies, and how to put screened text back.

Prompts: `prompt`, chat `messages[].content`, embeddings `input`, the Responses API's
`instructions` and `input` items, Anthropic's `system` and `messages` blocks (see
`_prompt_slots`). Answers: `choices[].text` / `.message.content`, Responses `output` items,
Anthropic `content` blocks; in streams, the delta of each `data:` event (chat chunks,
`response.output_text.delta`, `content_block_delta`).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from inferpool.errors import InferenceError
from inferpool.guard.policy import Action, Stage
from inferpool.guard.screen import Screener, Verdict
from inferpool.guard.stream import ANSWER_STAGE, STREAM_TAIL_CHARS, StreamedText

log = logging.getLogger(__name__)

CONTENT_FILTER = "content_filter"
_ANY_DIGIT = re.compile(r"\d")


class Blocked(Exception):
    """Screening decided the text may not pass; `reason` goes into the 400 / final SSE error.

    `passed`: in a stream, the screened events of the same chunk that came before the blocked one
    (they are sent before the error event, as if they had arrived in a chunk of their own).
    `final_event`: in a stream, the error event that ends it, in the stream's own API shape.
    """

    def __init__(self, reason: str, passed: bytes = b"", final_event: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.passed = passed
        self.final_event = final_event if final_event is not None else error_event(reason)


def complete_words(text: str) -> str:
    """`text` up to its last space or newline (a word still being streamed is left out)."""
    return text[: max(text.rfind(" "), text.rfind("\n")) + 1]


def _collector(into: list[str]) -> Callable[[str], str]:
    def collect(text: str) -> str:
        into.append(text)
        return text

    return collect


# A text in a decoded body: (the dict or list holding it, its key or index, whether it is a
# user turn right after a system prompt, which the injection check weighs).
_Slot = tuple[Any, Any, bool]


def _prompt_slots(data: Any) -> list[_Slot]:
    """Every prompt text of a request body, in order, wherever its API keeps it.

    Completions `prompt`; embeddings `input` (text or texts); the Responses API's
    `instructions` and `input` (text, or items with content parts); Anthropic's `system`;
    chat and Anthropic `messages[].content` (text or parts/blocks with `text`).
    """
    if not isinstance(data, dict):
        return []
    slots: list[_Slot] = []
    _strings(data, "prompt", slots)
    previous: object = None
    for key in ("instructions", "system"):
        if isinstance(data.get(key), str) or isinstance(data.get(key), list):
            _content_slots(data, key, False, slots)
            previous = "system"
    items = data.get("input")
    if isinstance(items, str):
        slots.append((data, "input", previous == "system"))
    elif isinstance(items, list):
        if all(isinstance(i, str) for i in items):
            _strings(data, "input", slots)
        else:
            previous = _message_slots(items, previous, slots)
    messages = data.get("messages")
    if isinstance(messages, list):
        _message_slots(messages, previous, slots)
    return slots


def _strings(data: dict[str, Any], key: str, slots: list[_Slot]) -> None:
    value = data.get(key)
    if isinstance(value, str):
        slots.append((data, key, False))
    elif isinstance(value, list):
        slots.extend((value, i, False) for i, v in enumerate(value) if isinstance(v, str))


def _message_slots(messages: list[Any], previous: object, slots: list[_Slot]) -> object:
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        _content_slots(msg, "content", role == "user" and previous in ("system", "developer"), slots)
        previous = role
    return previous


def _content_slots(holder: dict[str, Any], key: str, after_system: bool, slots: list[_Slot]) -> None:
    content = holder.get(key)
    if isinstance(content, str):
        slots.append((holder, key, after_system))
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    slots.append((part, "text", after_system))
                elif isinstance(part.get("content"), str):  # an Anthropic tool_result
                    slots.append((part, "content", after_system))


def _map_texts(data: Any, fn: Callable[[str], str]) -> None:
    """Apply `fn` to every prompt text in a request body, in place."""
    for holder, key, _ in _prompt_slots(data):
        holder[key] = fn(holder[key])


def _after_system(data: Any) -> list[bool]:
    """For each text `_map_texts` visits, in its order: is it a user turn right after a system prompt?"""
    return [after for _, _, after in _prompt_slots(data)]


def _choice_list(data: dict[str, Any]) -> list[Any]:
    """`choices`, when it is a list; an answer with anything else there holds no choice text
    (and passes on as it came: screening reads answers, it does not validate them)."""
    choices = data.get("choices")
    return choices if isinstance(choices, list) else []


def _map_choices(data: Any, fn: Callable[[str], str]) -> None:
    """Answer texts of OpenAI completions and chat: `choices[].text`, `.message.content`, `.delta.content`."""
    if not isinstance(data, dict):
        return
    for choice in _choice_list(data):
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):
            choice["text"] = fn(choice["text"])
        for holder in ("message", "delta"):
            inner = choice.get(holder)
            if isinstance(inner, dict) and isinstance(inner.get("content"), str):
                inner["content"] = fn(inner["content"])


def _map_answer(data: Any, fn: Callable[[str], str]) -> None:
    """Answer texts of every API: choices; the Responses API's `output` items (message
    `content[].text`, reasoning `content`/`summary`); Anthropic's `content` blocks (`text`)."""
    if not isinstance(data, dict):
        return
    if "choices" in data:
        _map_choices(data, fn)
        return
    for item in data.get("output") or []:
        if isinstance(item, dict):
            for key in ("content", "summary"):
                _map_parts(item.get(key), fn)
    if isinstance(data.get("content"), list):
        _map_parts(data["content"], fn)


def _map_parts(parts: Any, fn: Callable[[str], str]) -> None:
    if not isinstance(parts, list):
        return
    for part in parts:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            part["text"] = fn(part["text"])


# Stream events of the Responses and Messages APIs whose text is new (the deltas), and where
# it is; the `.done`/`_stop` events repeat the whole text, which is redacted but not re-added.
_DELTA_EVENTS = frozenset({"response.output_text.delta", "response.reasoning_text.delta"})
_FINAL_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete", "message_stop"})


def _map_stream_deltas(data: Any, fn: Callable[[str], str]) -> None:
    """New answer text in one stream event: chat/completion chunks, Responses deltas, Anthropic deltas."""
    if not isinstance(data, dict):
        return
    kind = data.get("type")
    if kind is None:
        _map_choices(data, fn)
    elif not isinstance(kind, str):
        return  # no event type of any API: nothing of it is answer text
    elif kind in _DELTA_EVENTS:
        if isinstance(data.get("delta"), str):
            data["delta"] = fn(data["delta"])
    elif kind == "content_block_delta":
        delta = data.get("delta")
        if isinstance(delta, dict):
            for key in ("text", "thinking"):
                if isinstance(delta.get(key), str):
                    delta[key] = fn(delta[key])


def _stream_delta_texts(data: Any) -> list[str]:
    """The texts `_map_stream_deltas` visits, in its order, read without a callback per text
    (every streamed event asks; only a redaction needs the mapper)."""
    if not isinstance(data, dict):
        return []
    kind = data.get("type")
    texts: list[str] = []
    if kind is None:
        for choice in _choice_list(data):
            if not isinstance(choice, dict):
                continue
            if isinstance(text := choice.get("text"), str):
                texts.append(text)
            for holder in ("message", "delta"):
                inner = choice.get(holder)
                if isinstance(inner, dict) and isinstance(text := inner.get("content"), str):
                    texts.append(text)
    elif not isinstance(kind, str):
        return texts
    elif kind in _DELTA_EVENTS:
        if isinstance(text := data.get("delta"), str):
            texts.append(text)
    elif kind == "content_block_delta":
        delta = data.get("delta")
        if isinstance(delta, dict):
            texts += [text for key in ("text", "thinking") if isinstance(text := delta.get(key), str)]
    return texts


def _map_stream_repeats(data: Any, fn: Callable[[str], str]) -> None:
    """Whole answer texts a Responses stream repeats once a part ends (`.done` events, the final response)."""
    if not isinstance(data, dict):
        return
    kind = data.get("type")
    if not isinstance(kind, str) or not kind.startswith("response."):
        return
    if kind == "response.output_text.done" or kind == "response.reasoning_text.done":
        if isinstance(data.get("text"), str):
            data["text"] = fn(data["text"])
    elif kind == "response.content_part.done":
        _map_parts([data.get("part")], fn)
    elif kind == "response.output_item.done":
        _map_answer({"output": [data.get("item")]}, fn)
    elif kind in _FINAL_EVENTS:
        _map_answer(data.get("response"), fn)


TextMapper = Callable[[Any, Callable[[str], str]], None]


async def _screen_json(
    screener: Screener, body: bytes, model: str, stage: Stage, texts_of: TextMapper, data: Any = None
) -> bytes:
    """Screen every text `texts_of` finds in a JSON body; redactions re-serialize it, Blocked if any blocks.

    Non-JSON, or JSON without texts, passes unchanged (byte for byte). `data` is the body already
    decoded, if the caller has it (a redaction changes it in place).
    """
    if data is None:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
    texts: list[str] = []
    texts_of(data, _collector(texts))
    if not texts:
        return body
    positions = _after_system(data) if stage is Stage.PROMPT else []
    if len(positions) != len(texts):
        positions = [False] * len(texts)
    verdicts: list[Verdict] = [
        await screener.screen_async(t, stage, model, after) for t, after in zip(texts, positions, strict=True)
    ]
    for v in verdicts:
        if v.blocked:
            raise Blocked(v.reason)
    if all(v.text == t for v, t in zip(verdicts, texts, strict=True)):
        return body
    replacements = iter(v.text for v in verdicts)
    texts_of(data, lambda _t: next(replacements))
    return orjson.dumps(data)


async def screen_request(screener: Screener, body: bytes, model: str, data: Any = None) -> bytes:
    """The body to forward (redacted if needed); Blocked if a check blocks. Non-JSON passes unchanged.

    `data`: the decoded body, when the caller has decoded it already (it may be changed in place).
    """
    return await _screen_json(screener, body, model, Stage.PROMPT, _map_texts, data)


async def screen_response(screener: Screener, body: bytes, model: str) -> bytes:
    """A whole (non-streamed) JSON answer, screened; Blocked if a check blocks."""
    return await _screen_json(screener, body, model, Stage.RESPONSE, _map_answer)


def content_filtered(reason: str, param: str) -> InferenceError:
    """The 400 a block answers (OpenAI's `content_filter` finish reason, as an error type)."""
    return InferenceError(400, reason, param=param, err_type=CONTENT_FILTER)


def screens_response(screener: Screener | None) -> bool:
    return screener is not None and screener.config.screens(Stage.RESPONSE)


def screens_prompt(screener: Screener | None) -> bool:
    return screener is not None and screener.config.screens(Stage.PROMPT)


def error_event(reason: str) -> bytes:
    """The final SSE event of a blocked stream: an OpenAI-style error object.

    The `openai` SDK raises on any event whose data has an `error` (Responses streams included)."""
    body = {"error": {"message": reason, "type": CONTENT_FILTER, "param": None, "code": 400}}
    return b"data: " + orjson.dumps(body) + b"\n\n"


def anthropic_error_event(reason: str) -> bytes:
    """The final event of a blocked Messages stream, as vLLM ends one that failed: Anthropic
    clients raise on `event: error` and ignore an untyped `data:` event."""
    body = {"type": "error", "error": {"type": CONTENT_FILTER, "message": reason}}
    return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"


class _Held:
    """A screened event held back: where its text starts and ends in the stream, its bytes, and
    (when it has text and may need redacting on release) its head and decoded data."""

    __slots__ = ("end", "event", "start", "texts")

    def __init__(self, start: int, end: int, event: bytes, texts: tuple[bytes, Any] | None) -> None:
        self.start = start
        self.end = end
        self.event = event
        self.texts = texts


def _rewritten(item: _Held, spans: list[tuple[int, int, str]]) -> bytes:
    """The event with the parts of `spans` in its text replaced: the marker where a span starts,
    nothing where it goes on from an earlier event."""
    assert item.texts is not None
    head, data = item.texts
    at = item.start

    def one(text: str) -> str:
        nonlocal at
        begin, at = at, at + len(text)
        out, pos = [], begin
        for start, stop, marker in spans:
            if stop <= begin or start >= at:
                continue
            out.append(text[pos - begin : max(start, begin) - begin])
            if start >= begin:
                out.append(marker)
            pos = min(stop, at)
        out.append(text[pos - begin :])
        return "".join(out)

    _map_stream_deltas(data, one)
    return head + b"data: " + orjson.dumps(data) + b"\n\n"


class StreamScreener:
    """Screens an SSE answer event by event.

    Each event's new text is redacted on its own (without hold-back); blocking checks also run over the recent
    text (STREAM_SCREEN_CHARS, at most `window`) when the pre-scan of the event and the
    STREAM_TAIL_CHARS before it fires, so a secret split across tokens is still caught.
    `stream.StreamedText` answers both from what each event added; an event whose text nothing
    can redact passes byte for byte, without re-encoding.

    Without hold-back the tokens before the one that completed a blocked match have been sent.
    With `stream_hold_back_chars` N (and a check that screens answers), events are held, in
    order, until their text lies N characters before the end of the complete words that passed
    the blocking checks: a match of up to N characters is blocked before any of it leaves, and
    redacted as the events are released, over the text around them, however they split it. A
    word that does not end (no space or newline: code, CJK text) is held for at most
    N + STREAM_TAIL_CHARS characters (and the window); past that it passes unscreened, as the
    checks only see complete words until the stream's end.
    """

    def __init__(self, screener: Screener, model: str) -> None:
        self.screener = screener
        self.model = model
        self.window = screener.config.stream_window_chars
        self._buffer = b""
        self._streamed = StreamedText(screener, self.window)
        # The last recent text the blocking checks passed: the same words (no word completed
        # since) give the same verdict, so they are not screened again.
        self._passed_recent = ""
        self._passed_span = (0, 0)  # where it lies: the same place holds the same text
        self.blocked: str | None = None
        self._anthropic = False  # an Anthropic Messages stream: it ends in its own error event
        hook = screener.config.hook
        self._hooked = hook is not None and Stage.RESPONSE in hook.stages
        hold_back = screener.config.stream_hold_back_chars
        redacts = bool(screener.redacting(Stage.RESPONSE))
        # Holding back only pays where something can block or redact an answer.
        self._hold_back = hold_back if hold_back > 0 and (self._streamed.can_block or redacts) else 0
        self._hold_limit = min(self.window, hold_back + STREAM_TAIL_CHARS)
        # Held events are redacted as they are released, over the text around them, so a match
        # split over several events is found (without hold-back each event is redacted alone).
        self._redacts_held = bool(self._hold_back) and redacts
        self._pii_only = screener.redacting(Stage.RESPONSE) == ("pii",)
        self._held: deque[_Held] = deque()
        self._texts: tuple[bytes, Any] | None = None  # the last event's (head, decoded data), if it had text
        self._ended = False  # the stream's final check passed: nothing is held any more

    async def feed(self, chunk: bytes) -> bytes:
        """Screened bytes to send for this chunk (complete events only, less those held back);
        Blocked ends the stream."""
        if not self._buffer and len(chunk) > 2 and chunk.find(b"\n\n") == len(chunk) - 2:  # one whole event
            try:
                event = await self._event(chunk)
            except Blocked as blocked:
                raise self._ending(blocked, []) from None
            return self._released(event) if self._hold_back else event
        out: list[bytes] = []
        self._buffer += chunk
        while True:
            sep = self._buffer.find(b"\n\n")
            if sep < 0:
                break
            event, self._buffer = self._buffer[: sep + 2], self._buffer[sep + 2 :]
            event = await self._screened(event, out)
            out.append(self._released(event) if self._hold_back else event)
        return b"".join(out)

    def _released(self, event: bytes) -> bytes:
        """The held events (this one last) whose text is now far enough behind the screened words."""
        held, streamed = self._held, self._streamed
        end = streamed.end
        texts, self._texts = self._texts, None
        held.append(_Held(end - streamed.added if texts else end, end, event, texts))
        if self._ended:
            release_to = end
        else:
            release_to = streamed.words_end - self._hold_back
            if end - self._hold_limit > release_to:
                release_to = end - self._hold_limit  # a run without a space: held up to the limit
            if release_to < 0:
                release_to = 0  # an event with no text before any was streamed ends at 0: it passes
        if held[0].end > release_to:
            return b""
        batch = [held.popleft()]
        while held and held[0].end <= release_to:
            batch.append(held.popleft())
        if self._redacts_held:
            self._redact_batch(batch)
        return batch[0].event if len(batch) == 1 else b"".join(h.event for h in batch)

    def _redact_batch(self, batch: list[_Held]) -> None:
        """Redact the events about to be released, screening their text with up to hold-back
        characters before it and the held text after it (up to the complete words' end), so a
        match is found whole however the events split it. A match that began in text already
        sent has only its part in these events removed."""
        streamed = self._streamed
        first, last = batch[0].start, batch[-1].end
        if first == last:
            return  # no text among them
        text_from = max(streamed.window_start, first - self._hold_back)
        text_to = max(last, streamed.end if self._ended else streamed.words_end)
        text = streamed.between(text_from, text_to)
        if self._pii_only and "@" not in text and not _ANY_DIGIT.search(text):
            return  # every PII shape holds an '@' or a digit (the pre-scan fires on nothing else)
        spans: list[tuple[int, int, str]] = []
        kinds: set[str] = set()
        kept_to = text_from
        for finding in sorted(
            self.screener.findings(text, ANSWER_STAGE, Action.REDACT), key=lambda f: f.start
        ):
            start, stop = text_from + finding.start, text_from + finding.end
            if start < kept_to:
                continue  # overlaps one kept (as `screen.redact` does)
            kept_to = stop
            if start < last and stop > first:
                spans.append((start, stop, f"[REDACTED:{finding.kind}]"))
                kinds.add(f"{finding.check}:{finding.kind}")
        if not spans:
            return
        # as Screener.screen logs what an event's own redaction found
        log.info(
            "guard %s response: %s (redact, held events)", self.screener.config.name, ", ".join(sorted(kinds))
        )
        for item in batch:
            if item.texts is not None and any(a < item.end and b > item.start for a, b, _ in spans):
                item.event = _rewritten(item, spans)

    async def close(self) -> bytes:
        """At the answer's end (the model server closed it): the held events, once the recent
        text passed the checks as at `[DONE]` (Blocked if not), and the bytes of an unfinished
        event as they came."""
        rest = self.flush()
        if not self._held:
            return rest
        try:
            await self._final_check()
        except Blocked as blocked:
            raise self._ending(blocked, []) from None
        return self._released(b"") + rest

    async def _screened(self, event: bytes, passed: list[bytes]) -> bytes:
        """One event screened; a block carries what this chunk `passed` before it and the
        stream's own final event."""
        try:
            return await self._event(event)
        except Blocked as blocked:
            raise self._ending(blocked, passed) from None

    def _ending(self, blocked: Blocked, passed: list[bytes]) -> Blocked:
        final = anthropic_error_event(blocked.reason) if self._anthropic else None
        return Blocked(blocked.reason, b"".join(passed), final)

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest

    async def _final_check(self) -> None:
        """At the stream's end: the last word, held back from the per-event checks, is screened now."""
        if self._streamed.text:
            whole = await self.screener.screen_async(self._streamed.text, Stage.RESPONSE, self.model)
            if whole.blocked:
                self.blocked = whole.reason
                raise Blocked(whole.reason)
        self._ended = True

    async def _event(self, event: bytes) -> bytes:
        # An event is "data: ..." (OpenAI chunks) or "event: NAME\ndata: ..." (Responses, Messages).
        at = event.find(b"data:")
        if at < 0:
            return event
        head, payload = event[:at], event[at + 5 :].strip()
        if head and not self._anthropic:
            self._anthropic = head.startswith((b"event: message_", b"event: content_block_"))
        if payload == b"[DONE]":
            await self._final_check()
            return event
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return event
        texts = _stream_delta_texts(data)
        if not texts:
            return await self._repeats(head, data, event)
        streamed = self._streamed
        streamed.append("".join(texts))
        if self._redacts_held:
            self._texts = (head, data)  # redacted when released, with the text around it
        if not streamed.tail_may_find():
            return event  # nothing in the new text (or just before it) any check could match
        if streamed.long_text is not None:
            # An event longer than the tail (a server that sends many tokens per event) may
            # start before the recent text does: its complete words are screened whole too.
            if words := complete_words(streamed.long_text):
                await self._screen_blocking(words)
        # Blocking checks see complete words only ("password = getpa" is not yet "password =
        # getpass()"), and only the recent text: a match ending in this event starts within it.
        span = streamed.recent_span()
        if span != self._passed_span:
            first, end = span
            recent = streamed.between(first, end)
            if recent != self._passed_recent:
                # may_block is False only when the recent text surely does not block; past it the
                # blocking checks alone decide (each event's text is redacted on its own below).
                if streamed.may_block(first, recent):
                    await self._screen_blocking(recent)
                self._passed_recent = recent
            self._passed_span = span
        if self._redacts_held:
            return event
        for text in texts:
            if self.screener.may_redact(text, ANSWER_STAGE):
                return self._redacted(head, data, event, _map_stream_deltas)
        return event

    async def _screen_blocking(self, text: str) -> None:
        """Raise Blocked when `text` blocks (the blocking checks decide; the full screen words
        the reason, and runs for every text when a hook screens responses)."""
        if self._hooked or self.screener.blocks(text, Stage.RESPONSE):
            whole = await self.screener.screen_async(text, Stage.RESPONSE, self.model)
            if whole.blocked:
                self.blocked = whole.reason
                raise Blocked(whole.reason)

    async def _repeats(self, head: bytes, data: Any, event: bytes) -> bytes:
        """A Responses/Messages event with no new text: the end of the stream, or a whole text
        repeated (`.done` events), which gets the redactions its deltas got."""
        if isinstance(data, dict) and isinstance(kind := data.get("type"), str) and kind in _FINAL_EVENTS:
            await self._final_check()
        return self._redacted(head, data, event, _map_stream_repeats)

    def _redacted(self, head: bytes, data: Any, event: bytes, texts_of: TextMapper) -> bytes:
        changed = False

        def one(text: str) -> str:
            nonlocal changed
            if not self.screener.may_redact(text, Stage.RESPONSE):
                return text
            verdict = self.screener.screen(text, Stage.RESPONSE)
            changed = changed or verdict.text != text
            return verdict.text

        texts_of(data, one)
        return head + b"data: " + orjson.dumps(data) + b"\n\n" if changed else event
