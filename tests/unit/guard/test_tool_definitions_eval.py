"""Error rates of screening tool definitions (docs/security.md, "Tool definitions").

Two sets of descriptions as tool authors write them, each written apart from the detectors'
rules: `tuning.jsonl` (149 benign, 76 poisoned), on which the tool-poisoning reading
(guard/poisoning.py) was developed, and `heldout.jsonl` (163 benign, 49 poisoned), committed
before any run against it (0b837fd) and not looked at while developing. Each description is
sent as one tool of a chat request with the default policy.

Held out, before the poisoning reading: 0/163 benign flagged, 4/49 poisoned blocked (the
injection check's override phrasings); with it: 1/163 and 36/49. The assertions hold the
injection check's false-positive target (≤ 2 %) on both sets and keep recall from falling below
what was measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from inferpool.guard import Screener
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


@pytest.mark.parametrize(("name", "least_blocked"), [("heldout", 36), ("tuning", 71)])
async def test_tool_definitions_error_rates(name: str, least_blocked: int) -> None:
    rows = [json.loads(line) for line in (TOOLS / f"{name}.jsonl").read_text().splitlines()]
    screener = Screener(default_config())
    benign = [await _outcome(screener, r["text"]) for r in rows if r["label"] == "benign"]
    harmful = [await _outcome(screener, r["text"]) for r in rows if r["label"] == "harmful"]
    assert len(benign) >= 120 and len(harmful) >= 40
    false_positives = sum(o != "passed" for o in benign)
    blocked = sum(o == "blocked" for o in harmful)
    print(f"\n[eval] tool definitions, {name}: {false_positives}/{len(benign)} benign flagged, "
          f"{blocked}/{len(harmful)} poisoned blocked")  # fmt: skip
    assert false_positives <= 0.02 * len(benign)
    assert blocked >= least_blocked
