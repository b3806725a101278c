"""The held-out sets of tests/data/guard/heldout/: each written and committed before the change
it measures. One count for every test that reports one, and what a check finds in one text."""

from __future__ import annotations

import json
from pathlib import Path

from inferpool.guard import Screener, Stage

HELD_OUT = Path(__file__).resolve().parents[2] / "data" / "guard" / "heldout"


def found_by_label(name: str, check: str, screener: Screener, after_system: bool = False) -> dict[str, int]:
    """How many harmful and how many benign texts of the set `name` the `check` finds something in."""
    rows = [json.loads(line) for line in (HELD_OUT / f"{name}.jsonl").read_text().splitlines()]
    return {
        label: sum(
            any(
                f.check == check
                for f, _action in screener.screen(r["text"], Stage.PROMPT, after_system).findings
            )
            for r in rows
            if r["label"] == label
        )
        for label in ("harmful", "benign")
    }


def values_covered(name: str, check: str, screener: Screener) -> tuple[int, int]:
    """For a set whose harmful rows name their secret (`value`): how many of those a `check`
    finding covers whole, and how many benign rows get any `check` finding."""
    rows = [json.loads(line) for line in (HELD_OUT / f"{name}.jsonl").read_text().splitlines()]
    covered = flagged = 0
    for row in rows:
        found = [f for f, _action in screener.screen(row["text"], Stage.PROMPT).findings if f.check == check]
        if row["label"] == "harmful":
            at = row["text"].index(row["value"])
            covered += any(f.start <= at and at + len(row["value"]) <= f.end for f in found)
        else:
            flagged += bool(found)
    return covered, flagged


def kinds_and_values(screener: Screener, text: str, check: str = "secrets") -> list[tuple[str, str]]:
    """What a `check` finds in a prompt: (kind, the text it covers) per finding."""
    return [
        (f.kind, text[f.start : f.end])
        for f, _action in screener.screen(text, Stage.PROMPT).findings
        if f.check == check
    ]
