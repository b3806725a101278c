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
from inferpool.guard.openai import Blocked, StreamScreener, screen_response
from inferpool.guard.policy import Action, CheckConfig, GuardConfig, Stage

CATALOGUE = Path(__file__).resolve().parents[2] / "data" / "guard" / "eval" / "catalogue.jsonl"
KEY = "AKIAIOSFODNN7EXAMPLE"
CARD = "4111 1111 1111 1111"
SECRETS = (CheckConfig("secrets", Action.BLOCK),)
CARDS = (CheckConfig("pii", Action.BLOCK, pii_types=("credit_card",)),)


def screener(checks: tuple[CheckConfig, ...], hold_back: int) -> Screener:
    return Screener(GuardConfig("t", checks, stream_hold_back_chars=hold_back))


def chat(text: str, index: int = 0, end: bytes = b"\n\n") -> bytes:
    return b"data: " + orjson.dumps({"choices": [{"index": index, "delta": {"content": text}}]}) + end


def messages(text: str) -> bytes:
    body = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    return b"event: content_block_delta\ndata: " + orjson.dumps(body) + b"\n\n"


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def sent_text(raw: bytes, index: int | None = None) -> str:
    """The answer text a client reads from the bytes it was sent (every API's delta shape;
    one choice's, if `index` is given)."""
    out = []
    for event in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        at = event.find(b"data: ")
        if at < 0 or event[at + 6 :] == b"[DONE]":
            continue
        data = orjson.loads(event[at + 6 :])
        if "choices" in data:
            out += [c["delta"].get("content", "") for c in data["choices"] if index in (None, c["index"])]
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
    """The catalogue's PII prompts as answers between benign lines, in events of 1-40 characters:
    every match of up to 64 characters that screening the whole text redacts is redacted in the
    stream too."""
    rng = random.Random(seed)
    # Between benign lines, so events are released (and redacted) mid-stream, not all at the end
    before, after = rng.choice(BENIGN)[:150], rng.choice(BENIGN)[:150]
    text = f"{before}\n{PII[pick]}\n{after}"
    whole = REDACTING.findings(text, Stage.RESPONSE, Action.REDACT)
    events, at = [], 0
    while at < len(text):
        size = rng.randint(1, 7) if rng.random() < 0.7 else rng.randint(8, 40)  # servers batch tokens
        events.append(chat(text[at : at + size]))
        at += size
    sent, reason = await run(StreamScreener(REDACTING, "m"), events)
    assert reason is None
    client = sent_text(sent)
    for finding in whole:
        if finding.end - finding.start <= 64:
            assert text[finding.start : finding.end] not in client, finding


def interleaved(*texts: str, size: int = 4) -> list[bytes]:
    """A stream of n choices, their events alternating as vLLM sends them."""
    split = [pieces(t, size) for t in texts]
    return [chat(p[i], n) for i in range(max(map(len, split))) for n, p in enumerate(split) if i < len(p)]


@pytest.mark.parametrize("hold_back", [0, 32])
async def test_each_choice_of_an_interleaved_stream_is_screened_on_its_own(hold_back: int) -> None:
    """With n=2 the choices' events alternate: a key in one is never contiguous with itself in
    the stream as a whole (both passed unscreened when the stream was one text)."""
    events = interleaved(f"the key is {KEY} and more", "no, it is, sure thing, ok fine, ok yes. done")
    sent, reason = await run(StreamScreener(screener(SECRETS, hold_back), "m"), events)
    assert reason is not None
    assert ("AKIA" in sent_text(sent, 0)) == (hold_back == 0)  # held back: none of it was sent
    redacting = screener((CheckConfig("pii", Action.REDACT),), 32)
    events = interleaved("write to jane.doe@example.com today", "a b c d e f g h i j k l m n o p", size=3)
    sent, reason = await run(StreamScreener(redacting, "m"), events)
    assert reason is None
    assert sent_text(sent, 0) == "write to [REDACTED:email] today"
    assert sent_text(sent, 1) == "a b c d e f g h i j k l m n o p"


@pytest.mark.parametrize("hold_back", [0, 8])
async def test_a_stream_of_crlf_events_is_screened_as_an_lf_one(hold_back: int) -> None:
    """SSE allows CRLF line ends; sse-starlette (llama-cpp-python's server) sends them."""
    text = f"the key is {KEY} and more"
    crlf = [chat(p, end=b"\r\n\r\n") for p in pieces(text, 4)]
    sent, reason = await run(StreamScreener(screener(SECRETS, hold_back), "m"), crlf, b"data: [DONE]\r\n\r\n")
    lf_sent, lf_reason = await run(
        StreamScreener(screener(SECRETS, hold_back), "m"), [chat(p) for p in pieces(text, 4)]
    )
    assert reason is not None and (reason, sent_text(sent)) == (lf_reason, sent_text(lf_sent))
    plain = b"".join(chat(p, end=b"\r\n\r\n") for p in pieces("a plain answer, nothing in it", 3))
    stream, sent = StreamScreener(screener(SECRETS, hold_back), "m"), b""
    for at in range(0, len(plain), 5):  # chunks that cut the CRLF CRLF apart
        sent += await stream.feed(plain[at : at + 5])
    assert sent + await stream.close() == plain


@pytest.mark.parametrize("hold_back", [0, 8])
async def test_an_unfinished_last_event_is_screened_when_the_stream_closes(hold_back: int) -> None:
    """A model server that closes the stream without the final blank line: that event is
    screened as a whole one, and the stream's final check runs (no [DONE] ran it)."""
    stream = StreamScreener(screener(SECRETS, hold_back), "m")
    sent = await stream.feed(chat("the key is ") + chat(KEY, end=b"\n"))
    with pytest.raises(Blocked):
        await stream.close()
    assert KEY not in sent_text(sent)
    redacting = StreamScreener(screener((CheckConfig("pii", Action.REDACT),), hold_back), "m")
    sent = await redacting.feed(chat("mail ") + chat("jane.doe@example.com now", end=b"\n"))
    sent += await redacting.close()
    assert sent_text(sent + b"\n\n") == "mail [REDACTED:email] now"


async def test_a_comment_reaches_the_client_while_text_is_held() -> None:
    """`: ping` keeps a proxy's idle timer from firing; holding it with the text would not."""
    stream = StreamScreener(screener(SECRETS, 32), "m")
    assert await stream.feed(chat("the first words")) == b""  # held: within 32 characters
    assert await stream.feed(b": ping\n\n") == b": ping\n\n"


async def test_an_event_longer_than_the_window_is_redacted_on_its_own() -> None:
    """Its start has left the window before it is released: it is redacted as without hold-back."""
    policy = Screener(
        GuardConfig(
            "t", (CheckConfig("pii", Action.REDACT),), stream_window_chars=128, stream_hold_back_chars=32
        )
    )
    long_event = "mail jane.doe@example.com now " + "word " * 60
    sent, reason = await run(StreamScreener(policy, "m"), [chat(long_event), chat("end of it")])
    assert reason is None and sent_text(sent).startswith("mail [REDACTED:email] now word")


async def test_reasoning_is_screened_and_a_redacted_choice_loses_its_logprobs() -> None:
    """vLLM streams a reasoning model's thinking as `delta.reasoning_content`; logprobs spell
    out the tokens a redaction removed."""
    reasoning = b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"reasoning_content": f"key {KEY} ok "}}]}) + b"\n\n"  # fmt: skip
    sent, reason = await run(StreamScreener(screener(SECRETS, 0), "m"), [reasoning, chat("fine")])
    assert reason is not None and KEY.encode() not in sent
    logprobs = {"content": [{"token": "jane.doe@example.com", "logprob": -0.1}]}
    event = {
        "choices": [{"index": 0, "delta": {"content": "mail jane.doe@example.com now"}, "logprobs": logprobs}]
    }
    stream = StreamScreener(screener((CheckConfig("pii", Action.REDACT),), 0), "m")
    out = orjson.loads((await stream.feed(b"data: " + orjson.dumps(event) + b"\n\n"))[6:])
    assert out["choices"][0]["delta"]["content"] == "mail [REDACTED:email] now"
    assert out["choices"][0]["logprobs"] is None


@pytest.mark.parametrize("hold_back", [0, 32])
async def test_a_redacted_choice_loses_its_token_ids(hold_back: int) -> None:
    """vLLM returns a choice's token ids with `return_token_ids` (each stream chunk its delta's);
    /detokenize turns them back into the text a redaction removed."""
    ids = [1111, 2222, 3333]
    event = {
        "choices": [{"index": 0, "delta": {"content": "mail jane.doe@example.com now "}, "token_ids": ids}]
    }
    clean = {"choices": [{"index": 0, "delta": {"content": "and more "}, "token_ids": ids}]}
    redacting = screener((CheckConfig("pii", Action.REDACT),), hold_back)
    events = [b"data: " + orjson.dumps(e) + b"\n\n" for e in (event, clean)]
    sent, reason = await run(StreamScreener(redacting, "m"), events)
    assert reason is None
    chunks = [orjson.loads(line[6:]) for line in sent.split(b"\n") if line.startswith(b"data: {")]
    assert [c["choices"][0]["token_ids"] for c in chunks] == [None, ids]
    answer = {
        "choices": [{"index": 0, "text": "mail jane.doe@example.com", "token_ids": ids, "logprobs": None}]
    }
    whole = orjson.loads(await screen_response(redacting, orjson.dumps(answer), "m"))
    assert whole["choices"][0]["token_ids"] is None and "[REDACTED:email]" in whole["choices"][0]["text"]


async def test_an_id_whose_keyword_stands_well_before_it_is_redacted_whole() -> None:
    """A UK NINO is an ID only with its keyword near (up to 48 characters before): a release
    that screened only hold-back characters before its events lost the keyword for the rest of
    the number, and sent `96 65 A` after a first batch had redacted its start."""
    text = "Some words first.\nMy National Insurance number is TL 38 96 65 A and then more words follow here."
    assert REDACTING.screen(text, Stage.RESPONSE).text.endswith(
        "[REDACTED:gb_nino] and then more words follow here."
    )
    tokens = ["Some words first.\nMy National ", "Insurance numbe", "r i", "s TL", " 38", " 96 65 A and th", "e", "n ",
              "mor", "e", " words", " ", "follow", " here."]  # fmt: skip
    assert "".join(tokens) == text
    held_32 = screener((CheckConfig("pii", Action.REDACT),), 32)
    sent, reason = await run(StreamScreener(held_32, "m"), [chat(t) for t in tokens])
    assert reason is None
    assert (
        sent_text(sent)
        == "Some words first.\nMy National Insurance number is [REDACTED:gb_nino] and then more words follow here."
    )


async def test_a_chunk_mixing_crlf_and_lf_events_is_split_at_each() -> None:
    """A chunk ending in LF LF may hold an earlier event that ended in CRLF CRLF."""
    chunk = chat(f"the key is {KEY}", end=b"\r\n\r\n") + chat(" and more")
    stream = StreamScreener(screener(SECRETS, 0), "m")
    with pytest.raises(Blocked):
        await stream.feed(chunk)


@pytest.mark.parametrize("checks", [SECRETS, (CheckConfig("pii", Action.REDACT),)])
async def test_a_choice_that_ends_mid_word_does_not_hold_back_the_others(
    checks: tuple[CheckConfig, ...],
) -> None:
    """vLLM ends choices at different times, rarely after a space: the ended one's last event
    must not hold every later event of the others until the stream's end."""
    stream = StreamScreener(screener(checks, 16), "m")
    sent = await stream.feed(chat("short answer done", 0))
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    sent += await stream.feed(b"data: " + orjson.dumps(finish) + b"\n\n")
    long_text = "lots of words in choice one " * 20
    for piece in pieces(long_text, 5):
        sent += await stream.feed(chat(piece, 1))
    assert sent_text(sent, 0) == "short answer done"
    assert len(long_text) - len(sent_text(sent, 1)) <= 16 + 16 + 5  # the hold-back, a step, an event
    sent += await stream.feed(b"data: [DONE]\n\n")
    assert sent_text(sent, 1) == long_text


async def test_reasoning_and_answer_are_separate_texts() -> None:
    """A delta holding both: a match never joins the thinking to the answer, and each keeps its text."""
    both = {"choices": [{"index": 0, "delta": {"content": "mail jane.d", "reasoning_content": "x"}}]}
    events = [b"data: " + orjson.dumps(both) + b"\n\n", chat("oe@example.com now ok")]
    sent, reason = await run(StreamScreener(screener((CheckConfig("pii", Action.REDACT),), 32), "m"), events)
    assert reason is None and b'"reasoning_content":"x"' in sent
    assert sent_text(sent) == "mail [REDACTED:email] now ok"  # the answer's own text, without the "x"


def test_release_redaction_reads_as_far_back_as_an_id_keyword_may_stand() -> None:
    """REDACT_CONTEXT_CHARS is derived from the PII rules' own reach, not a second guess of it."""
    from inferpool.guard import openai, pii

    assert openai.REDACT_CONTEXT_CHARS >= pii.CONTEXT_CHARS


async def test_a_private_key_streamed_is_redacted_whole_with_hold_back() -> None:
    """The key plugin finds the BEGIN line's label; the block it opens is the secret, so the
    body lines arriving after the label are redacted with it (before, they streamed out)."""
    body = (
        "MIIEowIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPmljnnudb9G3HECdnH\n"
        "lWu2/a1gB9JW5TBQ+AVpum9Okx7KfqkfBKL9mcHgSVYFnMnD+cMWnBXLQ4M8kzfO"
    )
    text = f"Sure:\n-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\nKeep it safe."
    redacting = (CheckConfig("secrets", Action.REDACT),)
    sent, reason = await run(
        StreamScreener(screener(redacting, 256), "m"), [chat(p) for p in pieces(text, 7)]
    )
    assert reason is None and sent_text(sent) == "Sure:\n[REDACTED:private_key]\nKeep it safe."
