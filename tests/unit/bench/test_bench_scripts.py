"""The scripts in bench/ are run by hand (docs/benchmarks.md gives their commands), never by a
test tier: their `--help`, and each subcommand's, must still work (an argparse help string with
a lone '%' made `cache_pressure_virtual.py --help` a traceback). Budget: ≈10 s (one interpreter per script and subcommand)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
SCRIPTS = sorted(BENCH.glob("*.py"))


def _help(script: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(script), *args, "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{script.name} {' '.join(args)} --help failed:\n{done.stderr[-2000:]}"
    assert "Traceback" not in done.stderr
    return done.stdout


def test_every_bench_script_is_found() -> None:
    assert {"closed_loop_probe.py", "cache_pressure_virtual.py", "soak_memory.py"} <= {
        s.name for s in SCRIPTS
    }


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_help_and_each_subcommands_help(script: Path) -> None:
    text = _help(script)
    assert text.startswith("usage:")
    # argparse lists subcommands as {a,b,c} on the usage line
    choices = re.search(r"usage: \S+(?: \[[^\]]*\])* \{([\w,-]+)\}", text)
    for command in choices.group(1).split(",") if choices else ():
        assert _help(script, command).startswith("usage:")
