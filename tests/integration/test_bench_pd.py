"""Smoke test: `inferpool bench compare` with a P/D fleet layout, end to end on a tiny trace.

Real processes: two simulated replicas per contender (aggregated, then one prefill and one
decode replica with vLLM's NixlConnector and llm-d's role labels) and `inferpool serve` in
front (`default`, then the `pd` profile running the two-leg protocol). About 20 s.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson


def test_compare_runs_an_aggregated_and_a_pd_fleet(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "inferpool.cli", "bench", "compare", "--fleet", "2", "--workload", "long-prompt",
            "--rate", "2", "--duration", "2", "--seed", "2", "--max-num-seqs", "4", "--kv-blocks", "2048",
            "--slo", "ttft=2s,tpot=50ms", "--contenders", "default,pd@1P1D", "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    documents = {
        name: orjson.loads((tmp_path / f"long-prompt-rate2-{name}.json").read_bytes())
        for name in ("default", "pd-1P1D")
    }
    for name, document in documents.items():
        summary = document["summary"]
        assert summary["requests"] > 0 and summary["ok"] == summary["requests"], (name, done.stderr[-2000:])
        assert summary["itl"]["p99"] > 0 and summary["ttft"]["p50"] > 0, name
    aggregated, split = documents["default"], documents["pd-1P1D"]
    assert aggregated["meta"]["layout"] == "aggregated" and aggregated["meta"]["prefill"] is None
    assert split["meta"]["layout"] == "1P1D"
    # every 8k-token prompt is mostly uncached on the decoder, so the `pd` profile splits each one,
    # and with both replicas up no prefill leg falls back
    legs = split["meta"]["prefill"]
    assert (legs["legs"], legs["fallbacks"]) == (split["summary"]["requests"], 0)
    assert 0 <= legs["prefix_hit_rate"] < 1  # the prefill replica's own cache: a document seen before
    # the decode replica served every request, the prefill replica none of their answers
    lines = (tmp_path / "long-prompt-rate2-pd-1P1D.requests.jsonl").read_bytes().splitlines()
    assert len({orjson.loads(line)["served_by"] for line in lines}) == 1
    table = done.stdout[done.stdout.index("### Prefill/decode (SLO ttft<=2.00s, tpot<=50ms)") :]
    row = next(line for line in table.splitlines() if line.startswith("| pd@1P1D |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[-2:] == [str(split["summary"]["requests"]), "0"]  # prefill legs, fallbacks
