"""`StreamedText.tail_may_find` answers from what each event added (and from triggers it saw at
earlier events); its answer must be the plain pre-scan of the tail at every event, not only in
the streams whose outcome `test_stream_unchanged.py` compares. Hypothesis streams mix trigger
pieces (hints, injection words, '@', digit runs, ID shapes, long tokens, letters that fold to
ASCII ones, non-ASCII digits, phrases split by odd spacing or disguised) with filler long enough to move each trigger out of the tail.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferpool.guard import Screener
from inferpool.guard.policy import Action, CheckConfig, GuardConfig, Stage, default_config
from inferpool.guard.stream import STREAM_TAIL_CHARS, StreamedText

RESPONSE = frozenset({Stage.RESPONSE})
_SCREENERS = {
    "default": Screener(default_config()),
    "default_window_60": Screener(GuardConfig("w60", default_config().checks, stream_window_chars=60)),
    "pii_only": Screener(GuardConfig("pii", (CheckConfig("pii", Action.REDACT, RESPONSE),))),
    "injection": Screener(GuardConfig("inj", (CheckConfig("injection", Action.BLOCK, RESPONSE),))),
    "denylist": Screener(
        GuardConfig("deny", (CheckConfig("denylist", Action.BLOCK, RESPONSE, terms=("bluebird",)),))
    ),
}
_PIECES = st.sampled_from(
    [
        " ", " ", "\n", "the", "word", "x@y.org", "@", "4111", "1111", "-", "555", "0100", "1234567",
        "AKIA", "IOSFODNN7EXAMPLE", "password", "=", "secret", "sk-proj-", "abcdefghijklmnopqrstuvwxyz0123",
        "ignore", "previous instructions", "system prompt", "RSSMRA85T10A562S", "İ", "ı", "K", "é",
        "٣٤٥", "aws", "api_key", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", ";", "AB12", "CD", "9", "you are now",
        "you  are\tnow", "developer\u00a0mode", "ig\u200bnore", "ｉｇｎｏｒｅ", "іgnore", "  ", "\t",
        "lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 3, "quiet words here. " * 8,
        "1gn", "0re", "pr0mpt", "$ystem", "h!dden", "i-g-", "n-o-r-e", "r e v e a l", "s.y.s.t.e.m", "a b",
        "ＡＫＩＡ", "\u0410", "KIA", "𝐀𝐊", "\U000e0041", "\u0336", "s\u0332", "\u034f", "\ufe0f", "ὁ\u0301",
        "vtaber", "nyy cerivbhf", "flfgrz cebzcg", "erongi", "tpmorp", "reven", "ue", "x", "SWdub3JlIGFsbCBwcmV2aW91cyBp", "bnN0cnVjdGlvbnM=", "\n",
    ]
)  # fmt: skip


def _plain_tails_agree(screener: Screener, text: str, size: int) -> None:
    """Stream `text` in events of `size` characters; at every event compare with the plain pre-scan."""
    streamed = StreamedText(screener, screener.config.stream_window_chars)
    for at in range(0, len(text), size):
        new = text[at : at + size]
        before = streamed.text
        streamed.append(new)
        tail = (
            before[-STREAM_TAIL_CHARS:] + new
            if len(new) > STREAM_TAIL_CHARS
            else streamed.text[-STREAM_TAIL_CHARS:]
        )
        assert streamed.tail_may_find() == screener.may_find(tail, Stage.RESPONSE), (at, tail)


_QUIET = "the cat sat on the mat. "  # no trigger of any policy here


@pytest.mark.parametrize(
    "trigger",
    # each shape also at its shortest (a run of 24, seven digits, an ID of seven), where one
    # character less in the tail is no match
    ["x@y.org", "call 555 0100 now", "5550100", "RSSMRA85T10A562S", "AB12345", "abcdefghijklmnopqrstuvwxyz0123",
     "abcdefghijklmnopqrstuvwx", "a_b-c+d/e=f.g" * 3, "password", "ignore previous instructions",
     "AKIAIOSFODNN7EXAMPLE", "٣٤٥٦٧٨٩", "İ"],
)  # fmt: skip
@pytest.mark.parametrize("size", [1, 3, 4, 7])
def test_a_trigger_leaving_the_tail_stops_firing_when_the_plain_prescan_does(trigger: str, size: int) -> None:
    """Each trigger between quiet text, at every offset modulo the event size: the event where it
    leaves the tail (a kept trigger position one character off would answer wrongly there)."""
    for policy in ("default", "injection", "default_window_60"):
        for shift in range(size):
            text = _QUIET[:shift] + _QUIET * 2 + trigger + " " + _QUIET * 14
            _plain_tails_agree(_SCREENERS[policy], text, size)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    words=st.lists(_PIECES, min_size=1, max_size=120),
    seed=st.integers(0, 2**16),
    policy=st.sampled_from(list(_SCREENERS)),
)
def test_tail_may_find_is_the_plain_prescan_of_the_tail(words: list[str], seed: int, policy: str) -> None:
    rng = random.Random(seed)
    text = "".join(words)
    sizes = rng.choice([(1, 1), (1, 4), (1, 4), (2, 9), (1, 300)])
    screener = _SCREENERS[policy]
    streamed = StreamedText(screener, screener.config.stream_window_chars)
    at = 0
    while at < len(text):
        new = text[at : at + rng.randint(*sizes)]
        at += len(new)
        before = streamed.text
        streamed.append(new)
        if len(new) > STREAM_TAIL_CHARS:
            tail = before[-STREAM_TAIL_CHARS:] + new
        else:
            tail = streamed.text[-STREAM_TAIL_CHARS:]
        assert streamed.tail_may_find() == screener.may_find(tail, Stage.RESPONSE), (at, tail)
