"""The checks' Hyperscan databases are compiled with a policy that uses them, not at import:
importing the gateway (every `inferpool` command, every server a test starts) took ≈0.6 s
longer when they were."""

from __future__ import annotations

import subprocess
import sys

from inferpool.guard import injection, pii
from inferpool.guard.policy import CheckConfig, GuardConfig
from inferpool.guard.screen import Screener

_PROBE = """
import inferpool.cli
from inferpool.guard import injection, pii
print(injection._signal_database.cache_info().currsize, pii._prefilters.cache_info().currsize,
      pii._alnum_prefilter.cache_info().currsize)
"""


def test_importing_the_cli_compiles_no_check_database() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0", "0"]


def test_a_screener_compiles_the_databases_of_its_checks() -> None:
    for compiled in (injection._signal_database, pii._prefilters, pii._alnum_prefilter):
        compiled.cache_clear()  # (another test in this process may have compiled them)
    Screener(GuardConfig(checks=(CheckConfig("secrets"),)))
    assert injection._signal_database.cache_info().currsize == 0
    Screener(GuardConfig(checks=(CheckConfig("injection"), CheckConfig("pii"))))
    assert injection._signal_database.cache_info().currsize == 1
    assert pii._prefilters.cache_info().currsize == 1 and pii._alnum_prefilter.cache_info().currsize == 1
