"""A short text's pre-scan answers "no digit run, no ID shape" from one digit search, and "no
long token" from its length, without the shapes' own searches: the answers must be the shapes'
(DIGIT_RUN, ALNUM_ID and LONG_TOKEN themselves, over the text)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from inferpool.guard import Screener, Stage
from inferpool.guard.policy import default_config
from inferpool.guard.prescan import ALNUM_ID, DIGIT_RUN, LONG_TOKEN

SCANNER = Screener(default_config())._scanners[Stage.PROMPT, None]

_PIECES = st.sampled_from(
    ["a", "Z", " ", "-", ".", "(", "/", "0", "7", "٣", "４", "AB", "CD12", "x" * 10, "_", "+", "=", "é", "\n"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=40))
def test_short_texts_get_the_shapes_answers(pieces: list[str]) -> None:
    text = "".join(pieces)
    scan = SCANNER.scan(text)
    assert scan.number_spans == tuple(m.span() for m in DIGIT_RUN.finditer(text))
    assert scan.alnum_ids == (ALNUM_ID.search(text) is not None)
    assert scan.long_tokens == tuple(m.span() for m in LONG_TOKEN.finditer(text))
