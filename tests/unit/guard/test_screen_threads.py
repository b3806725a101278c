"""The EPP screens from worker threads. The compiled (Hyperscan) databases are shared and never
change; each scan clones its scratch space (a scratch space is not thread-safe). Screening the
same texts from many threads at once must give what screening them one by one gives.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from inferpool.guard import Screener, Stage
from inferpool.guard.policy import default_config

CATALOGUE = Path(__file__).resolve().parents[2] / "data" / "guard" / "eval" / "catalogue.jsonl"


def test_screening_from_threads_matches_screening_in_turn() -> None:
    texts = [json.loads(line)["text"] for line in CATALOGUE.read_text().splitlines() if line.strip()]
    # long texts, so every compiled pass runs (short ones take the automaton)
    texts = ["\n".join(texts[i : i + 9]) for i in range(0, len(texts), 3)]
    screener = Screener(default_config())

    def verdict(text: str) -> tuple[str, object, list[tuple[str, str, int, int]]]:
        v = screener.screen(text, Stage.PROMPT)
        return v.text, v.action, [(f.check, f.kind, f.start, f.end) for f, _ in v.findings]

    expected = [verdict(t) for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            assert list(pool.map(verdict, texts)) == expected
