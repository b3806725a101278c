"""One contender of `inferpool bench overhead` under its closed-loop test, for A/B runs.

Starts the two instant backends and the contender exactly as the overhead bench does (proxy
on CPU 0, client and backends on CPU 1), warms up for a second, runs the closed loop (32
connections) and prints req/s and the contender's CPU µs per request read from /proc. With
`--py-spy FILE` it also records the picker (or the contender's last process) (py-spy from PyPI, raw format).
To compare two trees, run it with `PYTHONPATH=<worktree>/src` for each, alternating:

    python bench/closed_loop_probe.py serve:default --seconds 6
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

from inferpool.bench import native_loadgen
from inferpool.bench.cpu import cpu_seconds
from inferpool.bench.native_loadgen import LoadSpec
from inferpool.bench.overhead import (
    TESTS,
    Options,
    parse_contenders,
    start_backends,
    start_contender,
    wait_answering,
)
from inferpool.bench.procs import Child


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("contender", help="as `inferpool bench overhead --contenders` names one")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--py-spy", dest="py_spy", type=Path, help="record the contender to this file")
    args = parser.parse_args()
    (contender,) = parse_contenders(args.contender)
    with tempfile.TemporaryDirectory(prefix="inferpool-probe-") as tmp:
        work = Path(tmp)
        opts = Options([contender], frozenset({0}), frozenset({1}), work)
        model = work / "model"  # a local path as model id, as the overhead bench uses
        model.mkdir()
        binary = native_loadgen.ensure_built()
        children: list[Child] = []
        try:
            backends, _ = start_backends(opts, str(model), "probe", children)
            running = start_contender(contender, backends, str(model), opts, children)
            closed = next(t for t in TESTS if t.name == "closed")
            body = closed.body(str(model))
            wait_answering(running, TESTS[0].body(str(model)))
            native_loadgen.run(binary, running.targets, LoadSpec(body, 1.0, connections=8, drain_s=5), "1")
            pids = [child.proc.pid for child in running.proxies]
            # The picker, not Envoy, when the contender has one; else the proxy itself.
            spied = next((c for c in running.proxies if c.name.endswith("-picker")), running.proxies[-1])
            spy = None
            if args.py_spy is not None:
                spy = subprocess.Popen(
                    ["py-spy", "record", *(["--native"] if os.environ.get("SPY_NATIVE") else []), "-r", "250", "-d", str(max(1, int(args.seconds - 1))), "-f", "raw",
                     "-o", str(args.py_spy), "-p", str(spied.proc.pid)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
            before = cpu_seconds(pids)
            spec = LoadSpec(body, args.seconds, closed.connections, 0, drain_s=5)
            result = native_loadgen.run(binary, running.targets, spec, "1")
            spent = cpu_seconds(pids) - before
            print(f"{args.contender}: {result['rps']:.0f} req/s, {spent * 1e6 / result['ok']:.0f} µs/req")
            if spy is not None:
                spy.wait()
        finally:
            for child in reversed(children):
                child.stop(10)


if __name__ == "__main__":
    main()
