"""Error rates of the built-in checks on a labelled catalogue (JSON lines).

    python -m inferpool.guard.evaluate tests/data/guard/eval/catalogue.jsonl
    python -m inferpool.guard.evaluate tests/data/guard/eval/catalogue.jsonl --rewrites

With `--rewrites`, the injection check's rates with every item written as a model still reads
it (`rewrites.py`: other spacing, invisible characters, full-width letters, lookalikes, hard
wraps), one row per way.

Each line: {"label": "harmful"|"benign", "check": "pii"|"secrets"|"injection" (harmful only),
"text", "after_system": bool}. Every check is run alone, set to Block, on its own harmful
items and on every benign item: recall = its harmful items blocked, false-positive rate =
benign items blocked, precision = blocked items that were its harmful ones. "all" runs the
three together over every item.
"""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from inferpool.guard.policy import Action, CheckConfig, GuardConfig, Stage
from inferpool.guard.rewrites import REWRITES, wrapped
from inferpool.guard.screen import Screener

CHECKS = ("pii", "secrets", "injection")
# The policy the catalogue is scored with: every PII type, phone formats of the regions the
# catalogue's (multinational) traffic comes from, detect-secrets' default entropy limits.
EVAL_PHONE_REGIONS = ("US", "GB", "FR", "DE", "ES", "IN", "BR", "AU", "CN")


@dataclass(frozen=True)
class Item:
    label: str
    check: str
    text: str
    after_system: bool = False


@dataclass(frozen=True)
class Rates:
    check: str
    harmful: int
    blocked: int
    benign: int
    false_positives: int
    missed: tuple[str, ...]
    wrongly_blocked: tuple[str, ...]

    @property
    def recall(self) -> float:
        return self.blocked / self.harmful if self.harmful else 1.0

    @property
    def fp_rate(self) -> float:
        return self.false_positives / self.benign if self.benign else 0.0

    @property
    def precision(self) -> float:
        flagged = self.blocked + self.false_positives
        return self.blocked / flagged if flagged else 1.0


def load(path: Path) -> list[Item]:
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        raw = json.loads(line)
        if raw.get("label") not in ("harmful", "benign"):
            raise ValueError(f"{path}:{n}: label must be harmful or benign, got {raw.get('label')!r}")
        if raw["label"] == "harmful" and raw.get("check") not in CHECKS:
            raise ValueError(f"{path}:{n}: a harmful item needs check in {CHECKS}, got {raw.get('check')!r}")
        items.append(Item(raw["label"], raw.get("check", "-"), raw["text"], bool(raw.get("after_system"))))
    return items


def check_config(check: str, phone_regions: Sequence[str] = EVAL_PHONE_REGIONS) -> CheckConfig:
    return CheckConfig(check, Action.BLOCK, frozenset({Stage.PROMPT}), phone_regions=tuple(phone_regions))


def rates(items: Iterable[Item], checks: Sequence[str], name: str) -> Rates:
    screener = Screener(GuardConfig(f"evaluate-{name}", tuple(check_config(c) for c in checks)))
    harmful = blocked = benign = fps = 0
    missed: list[str] = []
    wrong: list[str] = []
    for item in items:
        in_scope = item.label == "harmful" and item.check in checks
        if item.label == "harmful" and not in_scope:
            continue
        verdict = screener.screen(item.text, Stage.PROMPT, item.after_system)
        if in_scope:
            harmful += 1
            blocked += verdict.blocked
            if not verdict.blocked:
                missed.append(item.text)
        else:
            benign += 1
            fps += verdict.blocked
            if verdict.blocked:
                wrong.append(f"{item.text}  <- {verdict.summary()}")
    return Rates(name, harmful, blocked, benign, fps, tuple(missed), tuple(wrong))


def evaluate(items: Sequence[Item]) -> list[Rates]:
    return [rates(items, (c,), c) for c in CHECKS] + [rates(items, CHECKS, "all")]


def table(results: Iterable[Rates]) -> str:
    lines = [
        "| check | harmful blocked (recall) | benign blocked (FP rate) | precision |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.check} | {r.blocked}/{r.harmful} ({r.recall:.1%}) | "
            f"{r.false_positives}/{r.benign} ({r.fp_rate:.1%}) | {r.precision:.1%} |"
        )
    return "\n".join(lines)


def rewritten(items: Sequence[Item]) -> list[Rates]:
    """The injection check's rates on `items` as written and under each of REWRITES and hard
    wraps at 60, 40 and 25 columns (each row named after its way)."""
    ways: dict[str, Callable[[str], str]] = {"as written": lambda text: text, **REWRITES}
    ways.update({f"wrapped at {width}": functools.partial(wrapped, width=width) for width in (60, 40, 25)})
    return [
        rates([Item(i.label, i.check, way(i.text), i.after_system) for i in items], ("injection",), name)
        for name, way in ways.items()
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("catalogue", type=Path)
    parser.add_argument("-v", "--verbose", action="store_true", help="list misses and false positives")
    parser.add_argument(
        "--rewrites", action="store_true", help="the injection check on the items rewritten (rewrites.py)"
    )
    args = parser.parse_args(argv)
    if args.rewrites:
        print(table(rewritten(load(args.catalogue))).replace("| check |", "| injection, written |", 1))
        return
    results = evaluate(load(args.catalogue))
    print(table(results))
    if args.verbose:
        for r in results[:-1]:
            for text in r.missed:
                print(f"missed [{r.check}]: {text!r}")
            for text in r.wrongly_blocked:
                print(f"false positive [{r.check}]: {text!r}")


if __name__ == "__main__":
    main()
