"""Smoke test: `inferpool bench compare` on a 2-replica fleet produces a well-formed table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from inferpool.bench.peers import Peer


def test_compare_smoke(tmp_path: Path) -> None:
    contenders = ["default", "round-robin"]
    if Peer("sglang-router", "cache_aware").installed():  # peers only when their venv already exists
        contenders.append("sglang-router")
    argv = [sys.executable, "-m", "inferpool.cli", "bench", "compare", "--fleet", "2", "--workload",
            "shared-prefix", "--rate", "4", "--duration", "5", "--groups", "6", "--system-tokens", "300",
            "--contenders", ",".join(contenders), "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "contender" not in line]
    assert len(rows) == len(contenders)
    assert all(len(row.split("|")) == 12 for row in rows)
    assert "default vs round-robin: p99 TTFT" in done.stdout
    for name in ("default", "round-robin"):
        summary = orjson.loads((tmp_path / f"shared-prefix-rate4-{name}.json").read_bytes())["summary"]
        assert summary["requests"] > 0 and summary["ok"] == summary["requests"]
    assert (tmp_path / "shared-prefix-rate4-cdf.png").stat().st_size > 1000
