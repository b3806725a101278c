"""Error rates of screening tool definitions (docs/security.md, "Tool definitions").

Sets of descriptions as tool authors write them, each written apart from the detectors' rules
(by helpers that read none of the code) and committed before any run against it:

- `tuning.jsonl` (149 benign, 76 poisoned), on which the tool-poisoning reading
  (guard/poisoning.py) was first developed;
- `heldout.jsonl` (163 benign, 49 poisoned, `0b837fd`): held out in the thirty-seventh session
  (36/49 blocked, 1/163 benign), read and developed on in the thirty-eighth;
- `tuning2.jsonl` (180 benign, 80 poisoned), written to develop on;
- `heldout2.jsonl` (170 benign, 70 poisoned, `3eb6ddd`): held out for the first round of the
  thirty-eighth session's rules (38/70 → 47/70 blocked, 3/170 benign blocked by the injection
  check before and after), then read and developed on;
- `heldout3.jsonl` (175 benign, 75 poisoned, `75a01d3`): held out from the session's first two
  rounds (`e878b24`: 37/75 blocked, 6/175 benign blocked by the injection check; 29/75 and
  8/175 with the thirty-seventh session's reading), then read and developed on;
- `heldout4.jsonl` (175 benign, 75 poisoned, `5b054e8`): held out from all of it, run once at the
  end: 50/75 blocked (38/75 with the thirty-seventh session's reading), 4/175 benign blocked by
  the injection check (8/175 before). The ≤ 2 % target is **missed** there (2.3 %), and recall
  is far from 85 %. Two of its false positives, read afterwards, were classes rather than
  phrasings (a tool that warns about injections quotes one; "the workspace ignore rules", an
  override's verb as a noun's modifier, which prompts were blocked for too), both mended: 2/175;
  and one miss (a parameter named for a secret's contents written into a signature line in the
  description): 51/75;
- `heldout5.jsonl` (175 benign, 75 poisoned, `21fa8bb`): held out from everything above, run once
  with the final rules: 43/75 blocked (35/75 with the thirty-seventh session's reading), 9/175
  benign blocked by the injection check (14/175 before). Its brief asked for more tools that warn
  about injections and quote one, and for destructive steps with their safeguards: the ≤ 2 %
  target is **missed** far there (5.1 %), and recall is far from 85 %.

The assertions below hold the fourth and fifth sets at what was measured and the others at the
target.

Each description is sent as one tool of a chat request with the default policy. What the other
checks do to benign descriptions (an example address redacted, a private key's header blocked)
is their own error rate, printed beside the injection check's.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from inferpool.guard import Screener, Stage
from inferpool.guard.openai import Blocked, screen_request
from inferpool.guard.policy import default_config

TOOLS = Path(__file__).resolve().parents[2] / "data" / "guard" / "tools"


async def _outcome(screener: Screener, description: str) -> str:
    tool = {"type": "function", "function": {"name": "tool", "description": description, "parameters": {}}}
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}], "tools": [tool]})
    try:
        return "redacted" if await screen_request(screener, body, "m") != body else "passed"
    except Blocked:
        return "blocked"


def _injection_found(screener: Screener, description: str) -> bool:
    verdict = screener.screen(description, Stage.PROMPT, definitions=True)
    return any(finding.check == "injection" for finding, _ in verdict.findings)


@pytest.mark.parametrize(
    ("name", "least_blocked", "most_false_positives"),
    [
        ("heldout5", 43, 9),
        ("heldout4", 51, 2),
        ("heldout3", 49, None),
        ("heldout2", 70, None),
        ("heldout", 49, None),
        ("tuning", 76, None),
        ("tuning2", 74, None),
    ],
)
async def test_tool_definitions_error_rates(
    name: str, least_blocked: int, most_false_positives: int | None
) -> None:
    rows = [json.loads(line) for line in (TOOLS / f"{name}.jsonl").read_text().splitlines()]
    screener = Screener(default_config())
    benign = [r["text"] for r in rows if r["label"] == "benign"]
    harmful = [await _outcome(screener, r["text"]) for r in rows if r["label"] == "harmful"]
    assert len(benign) >= 120 and len(harmful) >= 40
    flagged = sum([await _outcome(screener, text) != "passed" for text in benign])
    false_positives = sum(_injection_found(screener, text) for text in benign)
    blocked = sum(o == "blocked" for o in harmful)
    print(f"\n[eval] tool definitions, {name}: {false_positives}/{len(benign)} benign blocked as injection "
          f"({flagged} flagged by any check), {blocked}/{len(harmful)} poisoned blocked")  # fmt: skip
    if most_false_positives is None:
        assert false_positives <= 0.02 * len(benign)  # the injection check's target
    else:
        assert false_positives <= most_false_positives  # (the target is missed on this set: above)
    assert blocked >= least_blocked
