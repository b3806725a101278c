"""SecretScanner.find checks a line the text repeats once per call and reuses what the plugins
found in it. A line's findings must be what checking that line alone gives, wherever it
stands: on texts made of the guard corpus's lines (those with secrets and others), repeated
and shuffled, find's plugin findings must be each line's own findings, shifted to its place.
(The extra patterns and the value rules run over the whole text, not per line, and are left
out: a value rule skips a value inside another finding, and a private key's finding reaches
over the lines its BEGIN line opens, so an `Authorization: Bearer …` line after a cut-off
key's BEGIN line is the key's.)
"""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path

from inferpool.guard.credentials import SecretScanner

SCANNER = SecretScanner()
PLUGIN_KINDS = frozenset(plugin.kind for plugin in SCANNER.plugins)


def plugin_findings(text: str) -> list[tuple[str, int, int]]:
    # (a private key's finding reaches over the block its BEGIN line opens, past the line:
    # test_plugin_token_spans.py; here, where the plugin found its label counts)
    return sorted(
        (f.kind, f.start, f.end if f.kind != "private_key" else f.start)
        for f in SCANNER.find(text)
        if f.kind in PLUGIN_KINDS
    )


@cache
def lines() -> tuple[list[str], list[str]]:
    """ASCII lines of the corpus: those the plugins find a secret in, and a sample of others."""
    all_lines = sorted({line for text in corpus() for line in text.split("\n") if line.isascii()})
    with_secrets = [line for line in all_lines if plugin_findings(line)]
    return with_secrets, all_lines[::40]


def check(text: str) -> int:
    expected: list[tuple[str, int, int]] = []
    start = 0
    for line in text.split("\n"):
        expected += [(kind, start + a, start + b) for kind, a, b in plugin_findings(line)]
        start += len(line) + 1
    assert plugin_findings(text) == sorted(expected), text
    return len(expected)


def test_repeated_lines_give_each_line_its_own_findings() -> None:
    with_secrets, others = lines()
    assert len(with_secrets) > 20
    text = "\n".join((with_secrets + others[:50]) * 3)
    assert check(text) >= 3 * len(with_secrets)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_repeated_lines_give_each_line_its_own_findings_shuffled(data: st.DataObject) -> None:
    with_secrets, others = lines()
    pool = st.sampled_from(with_secrets) | st.sampled_from(others) | st.sampled_from(["", " ", "x = 1"])
    check("\n".join(data.draw(st.lists(pool, max_size=30))))


def test_a_line_after_a_cut_off_keys_begin_line_is_checked_as_its_own() -> None:
    """Hypothesis's find: a bearer token after a BEGIN line with no END is inside the key's
    finding, so the bearer rule (a whole-text rule) skips it; the plugins' findings stay per line."""
    check(
        "-----BEGIN EC PRIVATE KEY-----\nAUTHORIZATION: BEARER " + "EYJHBGCIOIJIUZI1NIISINR5CCI6IKPXVCJ9." * 3
    )
