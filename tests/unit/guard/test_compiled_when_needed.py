"""The checks' Hyperscan databases are compiled, and the detectors' libraries imported, when a
policy's detector is built, not when a data plane is imported: every `serve` or `epp` start
(every server a test starts) took ≈0.6 s longer for the databases and ≈0.3 s for the libraries."""

from __future__ import annotations

import subprocess
import sys

from inferpool.guard import injection, pii
from inferpool.guard.policy import CheckConfig, GuardConfig
from inferpool.guard.screen import Screener

_COMPILED = (injection._signal_database, pii._prefilters, pii._alnum_prefilter, pii._segment_database)
_PROBE = """
import sys
import inferpool.extproc.command, inferpool.gateway.command
print(*sorted(m for m in ("detect_secrets", "phonenumbers", "stdnum", "inferpool.guard.pii") if m in sys.modules))
from inferpool.guard import injection, pii
compiled = (injection._signal_database, pii._prefilters, pii._alnum_prefilter, pii._segment_database)
print(*(f.cache_info().currsize for f in compiled))
"""


def test_importing_the_data_planes_compiles_and_imports_no_detector() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    libraries, databases = done.stdout.split("\n")[:2]
    assert libraries.split() == []
    assert databases.split() == ["0", "0", "0", "0"]


def test_a_screener_compiles_the_databases_of_its_checks() -> None:
    for compiled in _COMPILED:
        compiled.cache_clear()  # (another test in this process may have compiled them)
    Screener(GuardConfig(checks=(CheckConfig("secrets"),)))
    assert [f.cache_info().currsize for f in _COMPILED] == [0, 0, 0, 0]
    Screener(GuardConfig(checks=(CheckConfig("injection"), CheckConfig("pii"))))
    assert [f.cache_info().currsize for f in _COMPILED] == [1, 1, 1, 1]
