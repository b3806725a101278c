"""The StreamScreener of main at 43fa9d7, before the per-event speed work, kept as the oracle
that tests/unit/guard/test_stream_unchanged.py compares the fast one with. Do not optimise it:
its worth is that it is the plain, slow definition (pre-scan of the last STREAM_TAIL_CHARS,
re-screen of the recent complete words with every check, redaction of each event's text)."""

from __future__ import annotations

from typing import Any

import orjson

from inferpool.guard.openai import (
    _FINAL_EVENTS,
    Blocked,
    TextMapper,
    _collector,
    _map_stream_deltas,
    _map_stream_repeats,
    anthropic_error_event,
)
from inferpool.guard.policy import Action, Stage
from inferpool.guard.screen import Screener, redact

STREAM_TAIL_CHARS = 256
STREAM_SCREEN_CHARS = 1024


class ReferenceStreamScreener:
    def __init__(self, screener: Screener, model: str) -> None:
        self.screener = screener
        self.model = model
        self.window = screener.config.stream_window_chars
        self._buffer = b""
        self._text = ""
        self._passed_recent = ""
        self.blocked: str | None = None
        self._anthropic = False

    async def feed(self, chunk: bytes) -> bytes:
        self._buffer += chunk
        out: list[bytes] = []
        while True:
            sep = self._buffer.find(b"\n\n")
            if sep < 0:
                break
            event, self._buffer = self._buffer[: sep + 2], self._buffer[sep + 2 :]
            try:
                out.append(await self._event(event))
            except Blocked as blocked:
                final = anthropic_error_event(blocked.reason) if self._anthropic else None
                raise Blocked(blocked.reason, b"".join(out), final) from None
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest

    async def _final_check(self) -> None:
        if self._text:
            whole = await self.screener.screen_async(self._text, Stage.RESPONSE, self.model)
            if whole.blocked:
                self.blocked = whole.reason
                raise Blocked(whole.reason)

    async def _event(self, event: bytes) -> bytes:
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
        texts: list[str] = []
        _map_stream_deltas(data, _collector(texts))
        if not texts:
            return await self._repeats(head, data, event)
        new = "".join(texts)
        # The pre-scan covers the event's whole text and the STREAM_TAIL_CHARS before it (main
        # took the last STREAM_TAIL_CHARS of both: an event longer than that passed unscreened,
        # its PII unredacted; fixed 2026-12-04).
        tail = self._text[-STREAM_TAIL_CHARS:] + new
        self._text = (self._text + new)[-self.window :]
        if not self.screener.may_find(tail, Stage.RESPONSE):
            return event
        if len(new) > STREAM_TAIL_CHARS:
            # A long event may start before the recent text: its complete words are screened
            # whole too (added 2026-12-04 with the fix above).
            words = tail[: max(tail.rfind(" "), tail.rfind("\n")) + 1]
            if words:
                whole = await self.screener.screen_async(words, Stage.RESPONSE, self.model)
                if whole.blocked:
                    self.blocked = whole.reason
                    raise Blocked(whole.reason)
        cut = max(self._text.rfind(" "), self._text.rfind("\n"))
        recent = self._text[max(0, cut + 1 - STREAM_SCREEN_CHARS) : cut + 1]
        if recent != self._passed_recent:
            whole = await self.screener.screen_async(recent, Stage.RESPONSE, self.model)
            if whole.blocked:
                self.blocked = whole.reason
                raise Blocked(whole.reason)
            self._passed_recent = recent
        return self._redacted(head, data, event, _map_stream_deltas)

    async def _repeats(self, head: bytes, data: Any, event: bytes) -> bytes:
        if isinstance(data, dict) and data.get("type") in _FINAL_EVENTS:
            await self._final_check()
        return self._redacted(head, data, event, _map_stream_repeats)

    def _redacted(self, head: bytes, data: Any, event: bytes, texts_of: TextMapper) -> bytes:
        changed = False

        def one(text: str) -> str:
            nonlocal changed
            # What the redacting checks find, whatever a blocking one finds: main used
            # screen(text).text, which redacts nothing once a blocking check finds something, so
            # a key ending an event (blocked only at the next word) let the event's PII out
            # unredacted (changed 2026-12-07, with the fast one).
            redacted = redact(text, self.screener.findings(text, Stage.RESPONSE, Action.REDACT))
            changed = changed or redacted != text
            return redacted

        texts_of(data, one)
        return head + b"data: " + orjson.dumps(data) + b"\n\n" if changed else event
