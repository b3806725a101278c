"""The prompt catalogue: every harmful prompt caught by its check, every benign prompt passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inferpool.guard import Action, CheckConfig, GuardConfig, Screener, Stage

CATALOGUE = yaml.safe_load((Path(__file__).parents[2] / "data" / "guard" / "prompts.yaml").read_text())
DENY = ("Project Nightingale", "initech")


def screener() -> Screener:
    return Screener(
        GuardConfig(
            "catalogue",
            (
                CheckConfig("pii", Action.BLOCK),
                CheckConfig("secrets", Action.BLOCK),
                CheckConfig("injection", Action.BLOCK),
                CheckConfig("denylist", Action.BLOCK, terms=DENY),
            ),
        )
    )


def test_catalogue_counts() -> None:
    s = screener()
    harmful, benign = CATALOGUE["harmful"], CATALOGUE["benign"]
    missed = [h["text"] for h in harmful if not s.screen(h["text"], Stage.PROMPT).blocked]
    wrong_check = [
        h["text"]
        for h in harmful
        if h["check"] not in {f.check for f, _ in s.screen(h["text"], Stage.PROMPT).findings}
    ]
    false_positives = [
        (b, s.screen(b, Stage.PROMPT).summary()) for b in benign if s.screen(b, Stage.PROMPT).blocked
    ]
    print(
        f"\nguard catalogue: harmful {len(harmful) - len(missed)}/{len(harmful)} blocked, "
        f"benign {len(benign) - len(false_positives)}/{len(benign)} passed"
    )
    assert not missed, missed
    assert not wrong_check, wrong_check
    assert not false_positives, false_positives


@pytest.mark.parametrize("item", CATALOGUE["harmful"], ids=lambda h: h["text"][:40])
def test_each_harmful_prompt_is_caught_by_its_check(item: dict[str, str]) -> None:
    only = screener()
    only_check = Screener(
        GuardConfig("one", tuple(c for c in only.config.checks if c.check == item["check"]))
    )
    assert only_check.screen(item["text"], Stage.PROMPT).blocked
