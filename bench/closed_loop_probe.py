"""One contender of `inferpool bench overhead` under one of its load tests, for A/B runs.

Starts the two instant backends and the contender exactly as the overhead bench does (proxy
on CPU 0, client and backends on CPU 1), warms up for a second, runs one load test (`--test`,
the closed loop unless told) and prints req/s and the contender's CPU µs per request read from
/proc (streamed tests: per event too, and the chunks' delay). With `--py-spy FILE` it also
records the picker (or the contender's last process) (py-spy from PyPI, raw format).
`--nonblocking` samples without stopping the process: py-spy's default stops it for each
sample, which interrupts the system call in progress, and a relay's socket writes then take
2–3× their share of the samples (paced test, `serve`: 44 % of them in the write, 17 % with
`--nonblocking`; docs/benchmarks.md). To compare two trees, run it with
`PYTHONPATH=<worktree>/src` for each, alternating:

    python bench/closed_loop_probe.py serve:default --seconds 6
    python bench/closed_loop_probe.py serve:default --test paced --py-spy paced.txt --nonblocking
"""

from __future__ import annotations

import argparse
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
    parser.add_argument(
        "--test", default="closed", choices=[t.name for t in TESTS], help="which load test to run"
    )
    parser.add_argument("--py-spy", dest="py_spy", type=Path, help="record the contender to this file")
    parser.add_argument("--native", action="store_true", help="py-spy: C frames too")
    parser.add_argument(
        "--nonblocking", action="store_true", help="py-spy: sample without stopping the process"
    )
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
            test = next(t for t in TESTS if t.name == args.test)
            body = test.body(str(model))
            wait_answering(running, TESTS[0].body(str(model)))
            native_loadgen.run(binary, running.targets, LoadSpec(body, 1.0, connections=8, drain_s=5), "1")
            pids = [child.proc.pid for child in running.proxies]
            # The picker, not Envoy, when the contender has one; else the proxy itself.
            spied = next((c for c in running.proxies if c.name.endswith("-picker")), running.proxies[-1])
            spy = None
            if args.py_spy is not None:
                spy = subprocess.Popen(
                    ["py-spy", "record", *(["--native"] if args.native else []),
                     *(["--nonblocking"] if args.nonblocking else []), "-r", "250", "-d", str(max(1, int(args.seconds - 1))), "-f", "raw",
                     "-o", str(args.py_spy), "-p", str(spied.proc.pid)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )  # fmt: skip
            before = cpu_seconds(pids)
            spec = LoadSpec(body, args.seconds, test.connections, test.rate, drain_s=5)
            result = native_loadgen.run(binary, running.targets, spec, "1")
            spent = cpu_seconds(pids) - before
            line = f"{args.contender}: {result['rps']:.0f} req/s, {spent * 1e6 / result['ok']:.0f} µs/req"
            if test.stream:
                line += f", {spent * 1e6 / max(1, result['events']):.2f} µs/event"
                line += f", chunk p50 {result['chunk_delay_ms']['p50']:.2f} ms, p99 {result['chunk_delay_ms']['p99']:.2f} ms"
            print(line)
            if spy is not None:
                spy.wait()
        finally:
            for child in reversed(children):
                child.stop(10)


if __name__ == "__main__":
    main()
