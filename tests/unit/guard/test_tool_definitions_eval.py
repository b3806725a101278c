"""Error rates of screening tool definitions, on a held-out set written apart from the detectors'
rules and committed before any run against them (0b837fd: tests/data/guard/tools/heldout.jsonl,
163 benign descriptions as tool authors write them, 49 poisoned ones). Each description is sent
as one tool of a chat request with the default policy.

Measured at the commit after it (docs/security.md, "Tool definitions"): no benign description
blocked or redacted; 4 of the 49 poisoned ones blocked. The injection check reads for override
phrasings, which few poisoned tools use. The assertions hold the false-positive target of the
injection check (≤ 2 %) and keep recall from falling below what was measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from inferpool.guard import Screener
from inferpool.guard.openai import Blocked, screen_request
from inferpool.guard.policy import default_config

HELDOUT = Path(__file__).resolve().parents[2] / "data" / "guard" / "tools" / "heldout.jsonl"


async def _outcome(screener: Screener, description: str) -> str:
    tool = {"type": "function", "function": {"name": "tool", "description": description, "parameters": {}}}
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}], "tools": [tool]})
    try:
        return "redacted" if await screen_request(screener, body, "m") != body else "passed"
    except Blocked:
        return "blocked"


async def test_tool_definitions_held_out_error_rates() -> None:
    rows = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    screener = Screener(default_config())
    benign = [await _outcome(screener, r["text"]) for r in rows if r["label"] == "benign"]
    harmful = [await _outcome(screener, r["text"]) for r in rows if r["label"] == "harmful"]
    assert len(benign) >= 150 and len(harmful) >= 40
    false_positives = sum(o != "passed" for o in benign)
    blocked = sum(o == "blocked" for o in harmful)
    print(f"\n[eval] tool definitions: {false_positives}/{len(benign)} benign flagged, "
          f"{blocked}/{len(harmful)} poisoned blocked")  # fmt: skip
    assert false_positives <= 0.02 * len(benign)
    assert blocked >= 4
