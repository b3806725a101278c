"""`streamHoldBackChars`: a streamed answer's events are held until their text lies that many
characters before the end of the complete words the blocking checks passed, so a blocked match
of up to that length never reaches the client; nothing else about the stream changes (the same
bytes, in the same order, once the stream ends)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.api.guard import GuardPolicySpec
from inferpool.guard import Screener
from inferpool.guard.openai import Blocked, StreamScreener
from inferpool.guard.policy import Action, CheckConfig, GuardConfig, Stage

CATALOGUE = Path(__file__).resolve().parents[2] / "data" / "guard" / "eval" / "catalogue.jsonl"
KEY = "AKIAIOSFODNN7EXAMPLE"
CARD = "4111 1111 1111 1111"
SECRETS = (CheckConfig("secrets", Action.BLOCK),)
CARDS = (CheckConfig("pii", Action.BLOCK, pii_types=("credit_card",)),)


def screener(checks: tuple[CheckConfig, ...], hold_back: int) -> Screener:
    return Screener(GuardConfig("t", checks, stream_hold_back_chars=hold_back))


def chat(text: str) -> bytes:
    return b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}) + b"\n\n"


def messages(text: str) -> bytes:
    body = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    return b"event: content_block_delta\ndata: " + orjson.dumps(body) + b"\n\n"


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def sent_text(raw: bytes) -> str:
    """The answer text a client reads from the bytes it was sent (every API's delta shape)."""
    out = []
    for event in raw.split(b"\n\n"):
        at = event.find(b"data: ")
        if at < 0 or event[at + 6 :] == b"[DONE]":
            continue
        data = orjson.loads(event[at + 6 :])
        if "choices" in data:
            out += [c["delta"].get("content", "") for c in data["choices"]]
        elif data.get("type") == "content_block_delta":
            out.append(data["delta"]["text"])
    return "".join(out)


async def run(stream: StreamScreener, events: list[bytes], done: bytes | None = b"data: [DONE]\n\n") -> tuple[bytes, str | None]:  # fmt: skip
    """Everything the client gets, and the block's reason (None if the stream ended normally)."""
    sent = b""
    try:
        for event in events:
            sent += await stream.feed(event)
        sent += await stream.feed(done) if done is not None else await stream.close()
    except Blocked as blocked:
        return sent + blocked.passed + blocked.final_event, blocked.reason
    return sent, None


async def test_a_key_streamed_four_characters_at_a_time_leaks_without_hold_back_and_not_with_it() -> None:
    text = f"the key is {KEY} and more"
    sent, reason = await run(StreamScreener(screener(SECRETS, 0), "m"), [chat(p) for p in pieces(text, 4)])
    assert reason is not None and "AKIAIOSFODNN7EXAM" in sent_text(sent)  # the documented leak
    sent, reason = await run(StreamScreener(screener(SECRETS, 1), "m"), [chat(p) for p in pieces(text, 4)])
    assert reason is not None
    # "is A" carries the key's first letter: held with everything after it, then dropped
    assert sent_text(sent) == "the key "
    assert orjson.loads(sent.rsplit(b"data: ", 1)[1])["error"]["type"] == "content_filter"


async def test_a_card_written_in_groups_needs_as_many_characters_held_back() -> None:
    text = f"fine so far and then {CARD} and more words"
    events = [chat(p) for p in pieces(text, 3)]
    sent, reason = await run(StreamScreener(screener(CARDS, 1), "m"), events)
    assert reason is not None and "4111 1111 11" in sent_text(sent)  # words pass as they complete
    sent, reason = await run(StreamScreener(screener(CARDS, len(CARD)), "m"), events)
    assert reason is not None
    assert "4" not in sent_text(sent) and sent_text(sent).startswith("fine so")


async def test_a_messages_stream_holds_back_and_ends_in_its_own_error_event() -> None:
    text = f"key {KEY} end"
    events = [messages(p) for p in pieces(text, 3)]
    sent, reason = await run(StreamScreener(screener(SECRETS, 8), "m"), events, b"event: message_stop\ndata: {\"type\": \"message_stop\"}\n\n")  # fmt: skip
    assert reason is not None and "AKI" not in sent_text(sent)
    assert sent.endswith(b"\n\n") and b"event: error\ndata: " in sent


async def test_an_answer_that_ends_without_done_is_screened_before_what_was_held_is_sent() -> None:
    """The model server closes the stream mid-word: `close()` screens the held text first."""
    held = screener(SECRETS, 4)
    sent, reason = await run(
        StreamScreener(held, "m"), [chat(p) for p in pieces(f"the key is {KEY}", 4)], None
    )
    assert reason is not None and sent_text(sent) == "the "  # "key " is within the last 4 characters
    sent, reason = await run(StreamScreener(held, "m"), [chat(p) for p in pieces("a plain answer", 4)], None)
    assert reason is None and sent == b"".join(chat(p) for p in pieces("a plain answer", 4))


async def test_nothing_is_held_when_no_check_screens_answers() -> None:
    prompt_only = screener((CheckConfig("secrets", Action.BLOCK, frozenset({Stage.PROMPT})),), 64)
    stream = StreamScreener(prompt_only, "m")
    assert await stream.feed(chat("hello wor")) == chat("hello wor")


async def test_pii_split_over_events_is_redacted_only_with_hold_back() -> None:
    """Each event alone holds no whole address; the held text around them does."""
    text = "write to jane.doe@example.com today, or call about card 4111 1111 1111 1111 soon."
    events = [chat(p) for p in pieces(text, 3)]
    redacting = (CheckConfig("pii", Action.REDACT, pii_types=("email", "credit_card")),)
    sent, reason = await run(StreamScreener(screener(redacting, 0), "m"), events)
    assert reason is None and sent_text(sent) == text  # per event: nothing to redact
    sent, reason = await run(StreamScreener(screener(redacting, 32), "m"), events)
    assert reason is None
    assert (
        sent_text(sent) == "write to [REDACTED:email] today, or call about card [REDACTED:credit_card] soon."
    )
    assert sent.endswith(b"data: [DONE]\n\n")


async def test_a_messages_stream_is_redacted_across_events() -> None:
    text = "mail jane.doe@example.com now"
    events = [messages(p) for p in pieces(text, 2)]
    stop = b'event: message_stop\ndata: {"type": "message_stop"}\n\n'
    sent, reason = await run(
        StreamScreener(screener((CheckConfig("pii", Action.REDACT),), 40), "m"), events, stop
    )
    assert reason is None and sent_text(sent) == "mail [REDACTED:email] now" and sent.endswith(stop)


async def test_a_word_that_never_ends_is_held_for_at_most_the_limit() -> None:
    """CJK text or a long code token has no space: held up to hold-back + 256 characters."""
    stream = StreamScreener(screener(SECRETS, 16), "m")
    sent, fed = b"", 0
    for piece in pieces("数" * 600, 2):
        sent += await stream.feed(chat(piece))
        fed += len(piece)
        assert fed - len(sent_text(sent)) <= 16 + 256 + 2  # at most the limit and one event
    assert len(sent_text(sent)) >= 600 - (16 + 256 + 2)
    sent += await stream.feed(b"data: [DONE]\n\n")
    assert sent_text(sent) == "数" * 600


def benign_texts() -> list[str]:
    rows = [json.loads(line) for line in CATALOGUE.read_text().splitlines()]
    return [r["text"] for r in rows if r["label"] == "benign"]


BENIGN = benign_texts()
POLICY = screener(SECRETS, 24)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, len(BENIGN) - 1), st.integers(0, 2**32), st.sampled_from([chat, messages]))
async def test_a_stream_that_passes_arrives_whole_and_in_order(pick: int, seed: int, shape: Any) -> None:
    """Any chunking of any benign answer: the client gets exactly the bytes it would without
    hold-back, and at each moment at most hold-back + 256 characters (+ one event) are held."""
    text = BENIGN[pick]
    if POLICY.screen(text, Stage.RESPONSE).blocked:
        return  # not this property's case (the catalogue's benign texts pass the secrets check)
    rng = random.Random(seed)
    events, at = [], 0
    while at < len(text):
        size = rng.randint(1, 7)
        events.append(shape(text[at : at + size]))
        at += size
    raw = b"".join(events) + b"data: [DONE]\n\n"
    cuts = sorted(rng.sample(range(1, len(raw)), min(len(raw) - 1, rng.randint(0, 12))))
    chunks = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    stream = StreamScreener(POLICY, "m")
    sent, fed = b"", b""
    for chunk in chunks:
        sent += await stream.feed(chunk)
        fed += chunk
        arrived = len(sent_text(fed[: fed.rfind(b"\n\n") + 2]))  # the text of the events complete so far
        assert arrived - len(sent_text(sent)) <= 24 + 256 + 7  # the limit and one event
    assert sent == raw


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"streamHoldBackChars": 4096}, "must be less than streamWindowChars"),
        ({"streamHoldBackChars": 100, "streamWindowChars": 64}, "must be less than streamWindowChars"),
        ({"streamHoldBackChars": -1}, "greater than or equal to 0"),
    ],
)
def test_hold_back_must_fit_the_window(spec: dict[str, Any], problem: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=problem):
        GuardPolicySpec.model_validate({"targetRefs": [{"kind": "Gateway", "name": "g"}], **spec})


def pii_texts() -> list[str]:
    rows = [json.loads(line) for line in CATALOGUE.read_text().splitlines()]
    return [r["text"] for r in rows if r["label"] == "harmful" and r["check"] == "pii"]


PII = pii_texts()
REDACTING = screener((CheckConfig("pii", Action.REDACT),), 64)


@settings(max_examples=80, deadline=None)
@given(st.integers(0, len(PII) - 1), st.integers(0, 2**32))
async def test_no_pii_the_whole_answer_would_redact_reaches_the_client(pick: int, seed: int) -> None:
    """The catalogue's PII prompts as answers between benign lines, in events of 1-7 characters:
    every match of up to 64 characters that screening the whole text redacts is redacted in the
    stream too."""
    rng = random.Random(seed)
    # Between benign lines, so events are released (and redacted) mid-stream, not all at the end
    before, after = rng.choice(BENIGN)[:150], rng.choice(BENIGN)[:150]
    text = f"{before}\n{PII[pick]}\n{after}"
    whole = REDACTING.findings(text, Stage.RESPONSE, Action.REDACT)
    events, at = [], 0
    while at < len(text):
        size = rng.randint(1, 7)
        events.append(chat(text[at : at + size]))
        at += size
    sent, reason = await run(StreamScreener(REDACTING, "m"), events)
    assert reason is None
    client = sent_text(sent)
    for finding in whole:
        if finding.end - finding.start <= 64:
            assert text[finding.start : finding.end] not in client, finding
