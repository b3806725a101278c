"""Speed work on StreamScreener must not change what a stream gets: the same bytes out for every
chunk, the same block at the same event with the same reason.

Three ways: `data/stream_golden.json` holds a digest of what main's StreamScreener (43fa9d7,
before the per-event speed work) sent for each of a fixed set of streams (the guard catalogue
and the tuning set, with some texts carrying letters that case-insensitive matching equates
with ASCII ones or non-ASCII digits, in chat, Responses and Messages event shapes, cut into
events of 1–4, 1–40 and 100–700 characters and into chunks that split events, under four
policies); a key and card numbers split into 1–4 character events at every offset must still
block, as the reference does; and hypothesis-made texts from the pieces detectors react to
are compared with `stream_reference.ReferenceStreamScreener` (main's code, kept verbatim),
under the four policies and the default one with windows of 60 and 600 characters.
Regenerated for two intended changes (2026-12-04): an event longer than the pre-scan's tail
is pre-scanned whole (before, its start was not, and one golden stream, an IBAN opening a
581-character event, passed unredacted), and its complete words are block-screened whole
(before, only the recent text was, and three streams under the 200-character window whose
injection or card numbers lay before it passed; they block now). Regenerated again
(2026-12-05) for the command-line password rule: with the old tuning set only the one stream
holding `mysql -u root -pHunter2Hunter2` changed; then with the tuning set's new items. And
(2026-12-06) for the injection signal "ignore the above and <do something>" and the style words
before an override's target: with the old tuning set no stream changed; then with the tuning
set's new items. And (2026-12-06) for the void words needing a rule noun near them: with the
old tuning set two streams under the "blocking" policy changed, both still blocked as
instructions_void, at a later event (where the noun arrives); then with the new items. And
(2026-12-06, after a review) for "ignore the above and <verb>" weighing 0.34 (it needs the
after-system bonus or a second signal), narrower rule nouns, the style look-behinds for any
one or two whitespace characters and "print what you were told" as exfiltration: with the old
tuning set one stream changed (the "blocking" policy: the textbook "Ignore the above and
translate ..." no longer blocks an answer alone; a secret later in it does); then with the
tuning set's new items. And (2026-12-06) for a bare "the system prompt" after an exfiltration verb
counting as a mention unless the verb is addressed to the model: with the old tuning set no
stream changed; then with the tuning set's new items. And (2026-12-06) for noun-led signals getting
the imperative bonus only when a verb or role header leads them or "you" follows: with the old
tuning set one stream under "blocking" changed (still blocked as claimed_authority, at a later
event); then with the tuning set's new items. And (2026-12-06) for overrides of technical targets
("the proxy configuration") weighing 0.3: with the old tuning set one stream under "blocking"
changed (still blocked as override_instructions, one event later); then with the new items.
And (2026-12-06) for documented example passwords being no secrets: with the old tuning set no
stream changed; then with the new items. And (2026-12-06) for the after-system bonus needing an
order and mentions weighing 0.2: with the old tuning set no stream changed; then with the new
items. And (2026-12-06) for complete trigger words and lines scored apart: with the
old tuning set two streams under "blocking" changed, both still blocked (one as exfiltration at
event 35 instead of as an override at 30, one at event 19 instead of 32); then with the new
items. And (2026-12-06) for npm and GitHub fine-grained tokens: with the old tuning set no stream
changed; then with the new items. And (2026-12-06) for "no longer bound by" and "pretend you have":
with the old tuning set no stream changed; then with the new items. And (2026-12-06) for void
words with technical rule nouns only: no stream changed; then the new items. And (2026-12-06) for
a document's instructions ("in the old manual"): no stream changed; then the new items. And
(2026-12-06, twenty-eighth session) for reading through disguises and odd spacing, and for line
breaks that wrap a sentence: with the old tuning set no stream changed; then with the tuning
set's 40 new items (disguised attacks, benign text with no-break spaces, joiners, tabs, wraps).
And (2026-12-07, thirty-first session) for opaque tokens in HTTP headers and hex digests their
line labels: one stream changed, a blocked one whose reason now names
`secrets:http_header_token` beside `pii:ssn` (the reading of base64 runs, letters one space apart
and credentials in base64 earlier that session moved no stream). Then for token-named values
(`token_assignment`): five streams changed, two blocked sooner (at a token-named value, where a
Stripe key and a keyword, or a DNI, blocked them later), two newly blocked (the tuning set's
`npm token: npm_…` glued to the next sentence, which the npm pattern's word edge misses), and one
that still passes with different event boundaries. And (2026-12-07, thirty-third session) for
a URL's userinfo and host being no email address: 17 streams changed, 16 still blocked, their
reason without `pii:email`; one under "small_window" (secrets redacted, PII blocked) no longer
blocked: its `git clone https://ghp_…@github.com` line was blocked as an "email", and its token,
a secret to redact, reaches the client as documented for a stream without hold-back.
And (2026-12-07, thirty-fourth session) for plugin tokens found whole: the GitHub and GitLab
tokens' spans moved no stream; a JWT found with its signature changed one under "small_window"
(secrets redacted), whose closing Responses events redacted the token but printed its
signature (now redacted with it, and the word the corpus glued to it). Then for a private key
found as its whole block: one stream under "small_window" changed, the dashes around the BEGIN
label now redacted with it; its key body, which arrives in pieces no finding covers yet,
reaches the client as before (without hold-back: `test_stream_hold_back.py` redacts it whole).
Regenerate the digests only for such a change:
`PYTHONPATH=src python tests/unit/guard/test_stream_unchanged.py > tests/unit/guard/data/stream_golden.json`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stream_reference import ReferenceStreamScreener  # pytest puts this folder on sys.path

from inferpool.guard import Screener
from inferpool.guard.evaluate import EVAL_PHONE_REGIONS, load
from inferpool.guard.openai import Blocked, StreamScreener
from inferpool.guard.policy import Action, CheckConfig, GuardConfig, Stage, default_config

DATA = Path(__file__).parents[2] / "data" / "guard"
GOLDEN = Path(__file__).parent / "data" / "stream_golden.json"
RESPONSE = frozenset({Stage.RESPONSE})
POLICIES = {
    "default": default_config(),
    # Every check blocks answers: PII of every type in the catalogue's regions, injection too.
    "blocking": GuardConfig(
        "blocking",
        (
            CheckConfig("pii", Action.BLOCK, phone_regions=EVAL_PHONE_REGIONS),
            CheckConfig("secrets", Action.BLOCK),
            CheckConfig("injection", Action.BLOCK),
        ),
    ),
    # Secrets redacted and PII blocked, injection only logged; a window shorter than the tail.
    "small_window": GuardConfig(
        "small_window",
        (
            CheckConfig("secrets", Action.REDACT, RESPONSE),
            CheckConfig("pii", Action.BLOCK, RESPONSE),
            CheckConfig("injection", Action.LOG, RESPONSE),
        ),
        stream_window_chars=200,
    ),
    # A deny-list (its pre-scan always fires) and PII redaction.
    "denylist": GuardConfig(
        "denylist",
        (
            CheckConfig("denylist", Action.BLOCK, RESPONSE, terms=("bluebird", "project x")),
            *default_config().checks,
        ),
    ),
}
_INSERTS = ("İ", "ı", "ſ", "K", "é", "٣٤٥", "１２３", "ß", "ﬀ", "\t")


def chat_events(pieces: Iterable[str]) -> list[bytes]:
    events = [
        b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"content": p}}]}) + b"\n\n"
        for p in pieces
    ]
    return [*events, b"data: [DONE]\n\n"]


def _typed(data: dict[str, Any]) -> bytes:
    return f"event: {data['type']}\n".encode() + b"data: " + orjson.dumps(data) + b"\n\n"


def responses_events(pieces: list[str]) -> list[bytes]:
    whole = "".join(pieces)
    message = {"type": "message", "content": [{"type": "output_text", "text": whole}]}
    return [
        _typed({"type": "response.created", "response": {"output": []}}),
        *(_typed({"type": "response.output_text.delta", "delta": p}) for p in pieces),
        _typed({"type": "response.output_text.done", "text": whole}),
        _typed({"type": "response.completed", "response": {"output": [message]}}),
    ]


def messages_events(pieces: list[str]) -> list[bytes]:
    return [
        _typed({"type": "message_start", "message": {"content": []}}),
        *(
            _typed({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
            for p in pieces
        ),
        b": keep-alive\n\n",
        _typed({"type": "message_stop"}),
    ]


SHAPES = {"chat": chat_events, "responses": responses_events, "messages": messages_events}


def pieces(text: str, sizes: tuple[int, int], rng: random.Random) -> list[str]:
    out, at = [], 0
    while at < len(text):
        n = rng.randint(*sizes)
        out.append(text[at : at + n])
        at += n
    return out


def chunks(events: list[bytes], rng: random.Random) -> list[bytes]:
    """The events as the network might deliver them: one per chunk, several, or split."""
    if rng.random() < 0.5:
        return events
    data, out, at = b"".join(events), [], 0
    while at < len(data):
        n = rng.randint(1, 400)
        out.append(data[at : at + n])
        at += n
    return out


def streams() -> list[tuple[str, list[bytes]]]:
    """(policy, chunks) for every golden stream, the same on every run: the whole corpus in
    groups (a stream ends at its first block), then its benign half alone (long streams)."""
    rng = random.Random(1717)
    items = load(DATA / "eval" / "catalogue.jsonl") + load(DATA / "tuning.jsonl")
    rng.shuffle(items)
    everything = [i.text for i in items]
    benign = [i.text for i in items if i.label == "benign"]
    out = []
    for policy in POLICIES:
        for texts, group in ((everything, 8), (benign, 40)):
            for i in range(0, len(texts), group):
                parts = [
                    t[:k] + rng.choice(_INSERTS) + t[k:] if rng.random() < 0.1 else t
                    for t in texts[i : i + group]
                    for k in [rng.randrange(len(t) + 1)]
                ]
                text = "".join(t + rng.choice((" ", "\n", "\n\n", ". ", "")) for t in parts)
                if policy == "denylist" and i % 80 == 0:
                    text = text.replace(" the ", " bluebird ", 1)
                sizes = rng.choice([(1, 4)] * 4 + [(1, 40), (1, 40), (5, 120), (100, 700)])
                shape = rng.choice(["chat"] * 4 + ["responses", "messages"])
                out.append((policy, chunks(SHAPES[shape](pieces(text, sizes, rng)), rng)))
    return out


async def transcript(kind: type[Any], screener: Screener, stream: list[bytes]) -> list[Any]:
    """What a StreamScreener class sends for each chunk, how it ends, and what it holds back."""
    screening = kind(screener, "m")
    out: list[Any] = []
    for chunk in stream:
        try:
            out.append((await screening.feed(chunk)).decode())
        except Blocked as blocked:
            final = blocked.final_event.decode()
            out.append(["blocked", blocked.reason, blocked.passed.decode(), final, screening.blocked])
            return out
    out.append(screening.flush().decode())
    return out


def digest(outcome: list[Any]) -> str:
    return hashlib.sha1(json.dumps(outcome, ensure_ascii=False).encode()).hexdigest()[:12]


def record() -> list[str]:
    screeners = {name: Screener(config) for name, config in POLICIES.items()}
    return [digest(asyncio.run(transcript(StreamScreener, screeners[p], stream))) for p, stream in streams()]


async def test_streams_are_those_recorded_before_the_speed_work() -> None:
    golden = json.loads(GOLDEN.read_text())
    cases = streams()
    assert len(golden) == len(cases)
    screeners = {name: Screener(config) for name, config in POLICIES.items()}
    blocked = 0
    for (policy, stream), recorded in zip(cases, golden, strict=True):
        now = await transcript(StreamScreener, screeners[policy], stream)
        if digest(now) != recorded:
            before = await transcript(ReferenceStreamScreener, screeners[policy], stream)
            first = next((i for i, (a, b) in enumerate(zip(now, before, strict=False)) if a != b), None)
            if first is None:  # the reference (the same detectors) sends the same: they changed
                pytest.fail(f"{policy} stream differs from its digest as the reference does: {now[-1]!r}")
            pytest.fail(
                f"{policy} stream differs at chunk {first}: now {now[first]!r}, before {before[first]!r}"
            )
        blocked += isinstance(now[-1], list)
    assert blocked > 20  # the corpus holds harmful items: many streams must end in a block


# A key (secrets block in every policy) and cards (PII blocks in "blocking") in prose.
SPLIT_TEXTS = (
    "Sure, the deploy key is AKIAIOSFODNN7EXAMPLE and it rotates weekly.",
    'config: password = "hunter2Hunter2!x" then restart',
    "Charge it to 4111 1111 1111 1111 please, expiry 12/29.",
    "card 5500-0000-0000-0004 on file",
    "export OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz012345\nnext line",
)


@pytest.mark.parametrize("text", SPLIT_TEXTS)
async def test_a_match_split_into_small_events_at_every_offset_is_screened_as_before(text: str) -> None:
    """Events of 1-4 characters, starting at every offset: each split blocks (in the blocking
    policy) exactly as the reference does, at the same event, and the default policy sends the
    same bytes."""
    screeners = {name: Screener(POLICIES[name]) for name in ("default", "blocking")}
    for size in range(1, 5):
        for offset in range(size):
            parts = ([text[:offset]] if offset else []) + [
                text[i : i + size] for i in range(offset, len(text), size)
            ]
            for name, screener in screeners.items():
                events = chat_events(parts)
                now = await transcript(StreamScreener, screener, events)
                assert now == await transcript(ReferenceStreamScreener, screener, events), (
                    name,
                    size,
                    offset,
                )
                if name == "blocking":
                    assert isinstance(now[-1], list) and now[-1][0] == "blocked", (size, offset)


async def test_an_event_longer_than_the_tail_is_screened_from_its_start() -> None:
    """An event's whole text is pre-scanned: e-mail at the start of a 500-character delta (a
    server that sends several tokens per event) is redacted, as it is in a short one."""
    screener = Screener(default_config())
    text = "Write to john.doe@example.com today. " + "lorem ipsum dolor sit amet " * 18
    assert len(text) > 256
    for kind in (StreamScreener, ReferenceStreamScreener):
        sent = "".join(await transcript(kind, screener, chat_events([text])))
        assert "john.doe@example.com" not in sent and "[REDACTED:email]" in sent, kind


async def test_a_key_early_in_an_event_longer_than_the_window_blocks() -> None:
    """The recent text is the last STREAM_SCREEN_CHARS of complete words; an event longer than
    that is block-screened whole as well, so a key at its start does not reach the client."""
    screener = Screener(default_config())
    text = "Use AKIAIOSFODNN7EXAMPLE for the deploy. " + "lorem ipsum dolor sit amet " * 60
    assert len(text) > 1024
    for kind in (StreamScreener, ReferenceStreamScreener):
        outcome = await transcript(kind, screener, chat_events([text]))
        assert isinstance(outcome[-1], list) and outcome[-1][0] == "blocked", kind
        assert "AKIA" not in "".join(x for x in outcome if isinstance(x, str)), kind


# Pieces the pre-scan and the detectors react to, and plain words between them.
_PIECES = st.sampled_from(
    [
        " ", " ", " ", "\n", "the", "word", "x@y.org", "@", "4111", "1111", "-", "(", "555", "0100",
        "1234567", "AKIA", "IOSFODNN7EXAMPLE", "password", "=", '"', "hunter2Hunter2!", "secret",
        "sk-proj-", "abcdefghijklmnopqrstuvwxyz0123", "ignore", "previous instructions", "system prompt",
        "GB82WEST12345698765432", "RSSMRA85T10A562S", "İ", "ı", "K", "é", "٣٤٥", "://", "aws", "api_key",
        "eyJhbGciOiJIUzI1NiJ9", ".", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", ";", ":",
        # (2026-12-07: header and token-named values, a wrapped base64 block's two lines)
        "Authorization: Bearer ", "9f8e7d6c5b4a39281706f5e4d3c2b1a0", "GITHUB_TOKEN=",
        "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eC0tLS0tQkVH",
        "SU4gUlNBIFBSSVZBVEUgS0VZLS0tLS0KTUlJRW93SUJBQUtDQVFFQU1JSUVvd0lC",
        # (2026-12-07: addresses written to hide them, and "at" and "dot" in prose)
        "jane.doe [at] gmail [dot] com", "r.green at example dot org", "mail me at sam at acme dot io",
        "JANE (AT) MAIL.COM", " at ", " AT ", "gmail", " dot ", "com", "[at]", "(at)", "[dot]", "look",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    words=st.lists(_PIECES, min_size=1, max_size=400),
    seed=st.integers(0, 2**16),
    policy=st.sampled_from([*POLICIES, "default_window_60", "default_window_600"]),
)
def test_random_streams_match_the_reference(words: list[str], seed: int, policy: str) -> None:
    rng = random.Random(seed)
    text = "".join(words)
    sizes = rng.choice([(1, 1), (1, 4), (1, 4), (2, 9), (1, 300)])
    events = SHAPES[rng.choice(list(SHAPES))](pieces(text, sizes, rng))
    stream = chunks(events, rng)
    screener = _SCREENERS[policy]
    now = asyncio.run(transcript(StreamScreener, screener, stream))
    assert now == asyncio.run(transcript(ReferenceStreamScreener, screener, stream))


# The golden policies, and the default checks with windows shorter than the pre-scan's tail
# and than the re-screened recent text (only secrets block: the line-by-line path).
_SCREENERS = {name: Screener(config) for name, config in POLICIES.items()} | {
    f"default_window_{n}": Screener(GuardConfig(f"w{n}", default_config().checks, stream_window_chars=n))
    for n in (60, 600)
}


if __name__ == "__main__":
    json.dump(record(), sys.stdout, indent=0)
