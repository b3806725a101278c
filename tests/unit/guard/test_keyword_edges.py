"""For a text of COMPILED_SCAN_CHARS or more with an exact fold, the pre-scan reports an ID
rule's keyword only where it begins or ends a word, and PII skips a rule none of whose keywords
it reports. That must lose no finding: the rule's context check sees a keyword only with a
non-word character or its slice's edge on each side, and no slice is the keyword alone (each
holds the number). So the findings with the pre-scan's keywords must be those with plain
substrings (`keywords=None`), on the guard corpus (padded to the compiled pass's length), on
keywords placed at every distance before an ID number, and on hypothesis-made texts.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_findings_unchanged import corpus  # pytest puts this folder on sys.path

from inferpool.guard.pii import CONTEXT_CHARS, ID_KEYWORDS, PiiScanner
from inferpool.guard.prescan import COMPILED_SCAN_CHARS, Prescanner

PRESCANNER = Prescanner(True, (), ID_KEYWORDS)
SCANNER = PiiScanner()
PADDING = " " * COMPILED_SCAN_CHARS


def findings(text: str) -> int:
    """Asserts the pre-scan's keywords give the findings plain substrings give; their number."""
    scan = PRESCANNER.scan(text)
    assert scan.keywords is not None
    lowered = scan.lowered
    assert scan.keywords <= {w for w in ID_KEYWORDS if w in lowered}

    def find(keywords: frozenset[str] | None) -> list[object]:
        return list(
            SCANNER.find(
                text,
                number_spans=scan.number_spans,
                alnum_ids=scan.alnum_ids,
                email=scan.email,
                lowered=lowered,
                keywords=keywords,
            )
        )

    with_prescan = find(scan.keywords)
    assert with_prescan == find(None), text
    return len(with_prescan)


def test_the_keyword_gate_loses_no_finding_in_the_corpus() -> None:
    texts = corpus()
    assert len(texts) > 500
    assert sum(findings(t + PADDING) for t in texts) > 50


def test_a_keyword_cut_by_the_context_slice_still_counts() -> None:
    """The keyword "ni" ending a word ("zzni") counts where the slice around the number begins at its "n";
    "ni" inside a word ("zzniz") never counts (and is never reported)."""
    number = "AB 12 34 56 C"
    found = 0
    for gap in range(CONTEXT_CHARS + 8):
        for word in ("zzni", "nix", "zzniz", "zzNI"):
            found += findings(f"{word} {'.' * gap}{number} and more{PADDING}")
            found += findings(f"{number}{'.' * gap} {word}{PADDING}")
    assert found > 0
    assert PRESCANNER.scan(f"zzniz {number}{PADDING}").keywords == frozenset()


FRAGMENTS = st.sampled_from(
    [*sorted(ID_KEYWORDS), "NI", "Nino", "Steuer-ID", "x", "z", "_", "1", " ", ".", "-", "\n", "é", "í", "\u00a0",
     "AB 12 34 56 C", "QQ123456C", "943 476 5919", "111222333", "54362315K", "44051401359", "390.533.447-05",
     "2341 2341 2346", "36 574 261 809", "SPECI2014", "..........", "          "]
)  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(FRAGMENTS, max_size=40).map("".join))
def test_the_keyword_gate_loses_no_finding(text: str) -> None:
    findings(text + PADDING)
    findings(PADDING + text)
