"""Redaction of held-back stream events is gated by the pre-scan's triggers (`Screener.redactions`):
a window of streamed text in which no redacting check can find anything is not screened. The gate
must never hide a finding: an address written "jane [at] gmail [dot] com" or with a full-width
'＠' holds neither an '@' nor a digit, and streamed alone (no digit in the text around it) it
reached the client unredacted while the whole answer's screen redacted it."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_reference import ReferenceStreamScreener
from test_stream_hold_back import chat, run, sent_text
from test_stream_unchanged import _SCREENERS, chat_events, pieces, transcript

from inferpool.guard import Screener
from inferpool.guard.openai import StreamScreener
from inferpool.guard.policy import Action, CheckConfig, GuardConfig, Stage, default_config

DATA = Path(__file__).resolve().parents[2] / "data" / "guard"
CORPORA = [
    *sorted((DATA / "heldout").glob("*.jsonl")),
    DATA / "tuning.jsonl",
    DATA / "eval" / "catalogue.jsonl",
]
ROWS = [json.loads(line) for path in CORPORA for line in path.read_text().splitlines() if line.strip()]
TEXTS = [row["text"] for row in ROWS]
PII = [row["text"] for row in ROWS if row["label"] == "harmful" and row["check"] == "pii"]
# Shapes with neither an '@' nor a digit, beside the corpora's
NO_AT_NO_DIGIT = [
    "You can contact jane [at] gmail [dot] com for the details.",
    "Write to jane.doe at example dot com and ask her.",
    "Her address is jane＠example.com if you want it.",
    "a＠b.io",
]
REDACTING = Screener(GuardConfig("t", (CheckConfig("pii", Action.REDACT),), stream_hold_back_chars=64))
DEFAULT = Screener(default_config())


@pytest.mark.parametrize("screener", [REDACTING, DEFAULT], ids=["pii", "default"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_gate_never_hides_a_finding(screener: Screener, data: st.DataObject) -> None:
    """On any window of any text of the guard corpora, what the gated redaction finds is what
    the redacting checks find."""
    text = data.draw(st.sampled_from(TEXTS + NO_AT_NO_DIGIT))
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    window = text[start:end]
    assert screener.redactions(window, Stage.RESPONSE) == screener.findings(
        window, Stage.RESPONSE, Action.REDACT
    )


@pytest.mark.parametrize("text", NO_AT_NO_DIGIT)
def test_a_short_token_with_a_lookalike_at_sign_may_be_redacted(text: str) -> None:
    """The per-event gate (`Screener.redactions`' short-token shortcut, without hold-back) lets
    through any text in which the redacting checks find something."""
    found = REDACTING.findings(text, Stage.RESPONSE, Action.REDACT)
    assert found  # (each holds an address)
    assert REDACTING.redactions(text, Stage.RESPONSE) == found


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(PII + NO_AT_NO_DIGIT), st.integers(0, 2**32))
async def test_pii_streamed_alone_is_redacted_as_in_the_whole_answer(text: str, seed: int) -> None:
    """Every PII text of the corpora streamed on its own (no benign lines around it whose digits
    would open the gate) in events of 1-12 characters: nothing of up to the hold-back's length
    that screening the whole answer redacts reaches the client."""
    events = [chat(piece) for piece in pieces(text, (1, 12), random.Random(seed))]
    sent, reason = await run(StreamScreener(REDACTING, "m"), events)
    assert reason is None
    client = sent_text(sent)
    for finding in REDACTING.findings(text, Stage.RESPONSE, Action.REDACT):
        if finding.end - finding.start <= 64:
            assert text[finding.start : finding.end] not in client, finding


ADDRESSES = [
    "jane.doe [at] gmail [dot] com",
    "r.green at example dot org",
    "Mail me at sam at acme dot io",
    "JANE (AT) MAIL.COM",
    "s_nakamura at sony.co.jp",
]


@pytest.mark.parametrize("policy", ["default", "blocking", "small_window"])
@pytest.mark.parametrize("address", ADDRESSES)
@pytest.mark.parametrize("size", [1, 3, 11])
async def test_an_address_written_to_hide_it_streams_as_the_reference_screens_it(
    policy: str, address: str, size: int
) -> None:
    """Prose with "at" and "dot" in it, then an obfuscated address alone (no '@', no digit):
    each event's output, and the block if any, are what the plain definition
    (`stream_reference`: `Screener.may_find` on every tail) gives. Before, the per-event triggers
    never fired on such an address: a policy that blocks PII sent it and blocked only at the
    stream's final check, and an event holding a whole address went out unredacted."""
    text = f"Look at the notes, then dot the i's at home. Contact {address} for more, thanks a lot. "
    screener = _SCREENERS[policy]
    stream = chat_events([text[i : i + size] for i in range(0, len(text), size)])
    now = await transcript(StreamScreener, screener, stream)
    assert now == await transcript(ReferenceStreamScreener, screener, stream)
    if policy != "default":  # (PII blocks answers there)
        assert isinstance(now[-1], list) and now[-1][0] == "blocked"


# Prose with "at", "dot", brackets and dots, and addresses written to hide them: no digit and no
# '@', so nothing else fires the per-event triggers
_PROSE = st.sampled_from(
    [" ", " ", "\n", "the", "look", " at ", " AT ", " dot ", "dot", "[", "]", "(at)", "[at]", "[dot]",
     ".", "co", "jane", "doe", "_", "mail", "write to", *ADDRESSES,
     # escapes: alone, and hiding an address or a key (every check reads them decoded)
     "%", "%4", "0", "%40", "\\", "\\/", "&#64;", "&commat;", "=41=42=43", "quoted-printable",
     "jane.doe%40gmail.com", "ghp%5F9JyG7sJJpVTTFBFjQ2mX0Qz8rL4vK1nW3eYd", "https:\\/\\/u:Vt8zQUMPM0!k@db"]
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(_PROSE, min_size=1, max_size=120),
    seed=st.integers(0, 2**16),
    policy=st.sampled_from(["default", "blocking", "small_window"]),
)
def test_prose_hidden_addresses_and_escapes_stream_as_the_reference_screens_them(
    words: list[str], seed: int, policy: str
) -> None:
    rng = random.Random(seed)
    text = "".join(words)
    stream = chat_events(pieces(text, rng.choice([(1, 1), (1, 4), (2, 9), (1, 60)]), rng))
    screener = _SCREENERS[policy]
    now = asyncio.run(transcript(StreamScreener, screener, stream))
    assert now == asyncio.run(transcript(ReferenceStreamScreener, screener, stream))


HIDING = sorted(
    {
        row["text"]
        for path in CORPORA
        if path.name.startswith(("escaped-", "json-escaped", "obfuscated-", "spoken-"))
        for line in path.read_text().splitlines()
        for row in [json.loads(line)]
    }
)


@pytest.mark.parametrize("policy", ["default", "blocking"])
@pytest.mark.parametrize("text", HIDING)
async def test_each_held_out_escape_and_hidden_address_streams_as_the_reference_screens_it(
    text: str, policy: str
) -> None:
    """The held-out sets of escaped text (percent-encoding, character references, \\u and \\x
    escapes, JSON's escaped slashes) and of addresses written to hide them, each between prose,
    in 3-character events: the same events out and the same block as the plain definition. Before,
    the per-event triggers did not look for escapes (a block came later, at the next trigger or
    the stream's end) and the secrets-only recent-text screen passed an escaped line with no
    trigger as written."""
    whole = f"Look at the notes here. {text} Thanks a lot for reading. "
    stream = chat_events([whole[i : i + 3] for i in range(0, len(whole), 3)])
    screener = _SCREENERS[policy]
    assert await transcript(StreamScreener, screener, stream) == await transcript(
        ReferenceStreamScreener, screener, stream
    )


@pytest.mark.parametrize("kind", [StreamScreener, ReferenceStreamScreener])
@pytest.mark.parametrize(
    "event",
    [
        "Call 415-555-0123 or use AKIAIOSFODNN7EXAMPLE",
        "Mail jane.doe@example.com the token ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE",
    ],
)
def test_a_blocking_match_ending_an_event_does_not_stop_its_redaction(kind: type, event: str) -> None:
    """The secret ending the event is complete only with the next word, so the stream blocks
    then, after this event has gone out (hold-back 0, as documented). Screened with every check,
    the event was found blocked, and a blocked verdict redacts nothing: its PII went out as
    written. Its redaction is that of the redacting checks alone."""
    stream = chat_events(["Sure. ", event, " now", " please. "])
    outcome = asyncio.run(transcript(kind, DEFAULT, stream))
    assert outcome[-1][0] == "blocked"
    passed = "".join(outcome[:-1]) + outcome[-1][2]
    assert "[REDACTED:" in passed
    for pii in ("415-555-0123", "jane.doe@example.com", "4111 1111 1111 1111"):
        assert pii not in passed
