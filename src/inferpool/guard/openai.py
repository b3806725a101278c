"""Where the text is in OpenAI-shaped bodies, and how to put screened text back.

Prompts: `prompt` (string or list of strings) and chat `messages[].content` (string or
text parts). Answers: `choices[].text` / `choices[].message.content`, and for streams the
same fields under `delta` in each `data:` event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from inferpool.errors import InferenceError
from inferpool.guard.policy import Stage
from inferpool.guard.screen import Screener, Verdict

CONTENT_FILTER = "content_filter"


class Blocked(Exception):
    """Screening decided the text may not pass; `reason` goes into the 400 / final SSE error.

    `passed`: in a stream, the screened events of the same chunk that came before the blocked one
    (they are sent before the error event, as if they had arrived in a chunk of their own).
    """

    def __init__(self, reason: str, passed: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.passed = passed


def _collector(into: list[str]) -> Callable[[str], str]:
    def collect(text: str) -> str:
        into.append(text)
        return text

    return collect


def _map_texts(data: Any, fn: Callable[[str], str]) -> None:
    """Apply `fn` to every prompt/message text in a request body, in place."""
    if not isinstance(data, dict):
        return
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        data["prompt"] = fn(prompt)
    elif isinstance(prompt, list):
        data["prompt"] = [fn(p) if isinstance(p, str) else p for p in prompt]
    for msg in data.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            msg["content"] = fn(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = fn(part["text"])


def _after_system(data: Any) -> list[bool]:
    """For each text `_map_texts` visits, in its order: is it a user turn right after a system prompt?"""
    if not isinstance(data, dict):
        return []
    prompt = data.get("prompt")
    flags = [False] if isinstance(prompt, str) else []
    if isinstance(prompt, list):
        flags = [False for p in prompt if isinstance(p, str)]
    previous = None
    for msg in data.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        role = msg.get("role")
        flag = role == "user" and previous in ("system", "developer")
        content = msg.get("content")
        if isinstance(content, str):
            flags.append(flag)
        elif isinstance(content, list):
            flags += [
                flag for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
            ]
        previous = role
    return flags


def _map_choices(data: Any, fn: Callable[[str], str]) -> None:
    if not isinstance(data, dict):
        return
    for choice in data.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):
            choice["text"] = fn(choice["text"])
        for holder in ("message", "delta"):
            inner = choice.get(holder)
            if isinstance(inner, dict) and isinstance(inner.get("content"), str):
                inner["content"] = fn(inner["content"])


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
    return await _screen_json(screener, body, model, Stage.RESPONSE, _map_choices)


def content_filtered(reason: str, param: str) -> InferenceError:
    """The 400 a block answers (OpenAI's `content_filter` finish reason, as an error type)."""
    return InferenceError(400, reason, param=param, err_type=CONTENT_FILTER)


def screens_response(screener: Screener | None) -> bool:
    return screener is not None and screener.config.screens(Stage.RESPONSE)


def screens_prompt(screener: Screener | None) -> bool:
    return screener is not None and screener.config.screens(Stage.PROMPT)


def error_event(reason: str) -> bytes:
    """The final SSE event of a blocked stream: an OpenAI-style error object."""
    body = {"error": {"message": reason, "type": CONTENT_FILTER, "param": None, "code": 400}}
    return b"data: " + orjson.dumps(body) + b"\n\n"


# How much already-streamed text the per-event pre-scan looks at besides the new text: a match
# (a key, a card number, an injection phrase) is caught when it completes if its trigger lies
# within this tail; only then is the whole window screened.
STREAM_TAIL_CHARS = 256
# How much of the window a fired pre-scan re-screens (at most streamWindowChars): longer than
# any match the built-in detectors make, so a 4 KB window is not re-read for every token.
STREAM_SCREEN_CHARS = 1024


class StreamScreener:
    """Screens an SSE answer event by event.

    Each event's new text is redacted on its own; blocking checks also run over the recent
    text (STREAM_SCREEN_CHARS, at most `window`) when the pre-scan of the event and the
    STREAM_TAIL_CHARS before it fires, so a secret split across tokens is still caught (but
    the tokens before the one that completed it have already been sent).
    """

    def __init__(self, screener: Screener, model: str) -> None:
        self.screener = screener
        self.model = model
        self.window = screener.config.stream_window_chars
        self._buffer = b""
        self._text = ""
        self.blocked: str | None = None

    async def feed(self, chunk: bytes) -> bytes:
        """Screened bytes to send for this chunk (complete events only); Blocked ends the stream."""
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
                raise Blocked(blocked.reason, b"".join(out)) from None
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest

    async def _event(self, event: bytes) -> bytes:
        line = event.strip()
        if not line.startswith(b"data:"):
            return event
        payload = line[5:].strip()
        if payload == b"[DONE]":
            if self._text:  # the last word, held back below, is screened now
                whole = await self.screener.screen_async(self._text, Stage.RESPONSE, self.model)
                if whole.blocked:
                    self.blocked = whole.reason
                    raise Blocked(whole.reason)
            return event
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return event
        texts: list[str] = []
        _map_choices(data, _collector(texts))
        if not texts:
            return event
        self._text = (self._text + "".join(texts))[-self.window :]
        if not self.screener.may_find(self._text[-STREAM_TAIL_CHARS:], Stage.RESPONSE):
            return event  # nothing in the new text (or just before it) any check could match
        # Blocking checks see complete words only ("password = getpa" is not yet "password =
        # getpass()"), and only the recent text: a match ending in this event starts within it.
        cut = max(self._text.rfind(" "), self._text.rfind("\n"))
        recent = self._text[max(0, cut + 1 - STREAM_SCREEN_CHARS) : cut + 1]
        whole = await self.screener.screen_async(recent, Stage.RESPONSE, self.model)
        if whole.blocked:
            self.blocked = whole.reason
            raise Blocked(whole.reason)
        changed = False

        def one(text: str) -> str:
            nonlocal changed
            verdict = self.screener.screen(text, Stage.RESPONSE)
            changed = changed or verdict.text != text
            return verdict.text

        _map_choices(data, one)
        return b"data: " + orjson.dumps(data) + b"\n\n" if changed else event
