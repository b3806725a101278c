"""The tests' root: its directory is on sys.path for every tier, so that `free_ports` (the one
helper that hands out ports) imports the same way from each."""

from __future__ import annotations

import os

from inferpool.bench.procs import PORT_SLICE_ENV

# `make test` runs the suite in parallel workers (pytest-xdist); each picks its ports in its own
# slice, and so does every process it starts (they inherit the variable).
if "PYTEST_XDIST_WORKER" in os.environ:
    _worker = int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw"))
    os.environ[PORT_SLICE_ENV] = f"{_worker}/{os.environ['PYTEST_XDIST_WORKER_COUNT']}"
