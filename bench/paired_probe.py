"""Two trees' `serve` side by side, for an A/B of a few µs on a noisy machine.

Both run at once, each pinned to CPU 0 in front of the same two instant backends (CPU 1), and
the closed loop alternates between them in short windows (`--windows` pairs of `--seconds`):
each pair's CPU µs per request (read from /proc) is measured within seconds of the other's,
so a neighbour that slows the machine for a while moves both. Prints each pair and the median
of the pairs' differences and ratios.

    python bench/paired_probe.py /tmp/wt_before/src /tmp/wt_after/src --windows 15
"""

from __future__ import annotations

import argparse
import os
import statistics
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
    parser.add_argument("trees", nargs=2, help="two source directories (each a PYTHONPATH for one `serve`)")
    parser.add_argument("--contender", default="serve:default")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--windows", type=int, default=15)
    args = parser.parse_args()
    (contender,) = parse_contenders(args.contender)
    test = next(t for t in TESTS if t.name == "closed")
    with tempfile.TemporaryDirectory(prefix="inferpool-paired-") as tmp:
        work = Path(tmp)
        opts = Options([contender], frozenset({0}), frozenset({1}), work)
        model = work / "model"
        model.mkdir()
        binary = native_loadgen.ensure_built()
        children: list[Child] = []
        try:
            backends, _ = start_backends(opts, str(model), "paired", children)
            body = test.body(str(model))
            runs = []
            for tree in args.trees:
                os.environ["PYTHONPATH"] = tree  # the contender's children inherit it
                running = start_contender(contender, backends, str(model), opts, children)
                wait_answering(running, body)
                native_loadgen.run(
                    binary, running.targets, LoadSpec(body, 1.0, connections=8, drain_s=5), "1"
                )
                runs.append(running)
            per_request: list[list[float]] = [[], []]
            for window in range(args.windows):
                order = (0, 1) if window % 2 == 0 else (1, 0)  # neither always goes first
                for side in order:
                    running = runs[side]
                    pids = [child.proc.pid for child in running.proxies]
                    before = cpu_seconds(pids)
                    spec = LoadSpec(body, args.seconds, test.connections, test.rate, drain_s=5)
                    result = native_loadgen.run(binary, running.targets, spec, "1")
                    per_request[side].append((cpu_seconds(pids) - before) * 1e6 / result["ok"])
                a, b = per_request[0][-1], per_request[1][-1]
                print(f"window {window + 1}: {a:.0f} / {b:.0f} µs per request, ratio {b / a:.3f}", flush=True)
            diffs = [b - a for a, b in zip(*per_request, strict=True)]
            ratios = [b / a for a, b in zip(*per_request, strict=True)]
            print(
                f"median: {statistics.median(per_request[0]):.0f} / {statistics.median(per_request[1]):.0f} µs;"
                f" difference {statistics.median(diffs):+.1f} µs ({min(diffs):+.0f}…{max(diffs):+.0f}),"
                f" ratio {statistics.median(ratios):.3f} ({min(ratios):.3f}…{max(ratios):.3f})"
            )
        finally:
            for child in reversed(children):
                child.stop(10)


if __name__ == "__main__":
    main()
