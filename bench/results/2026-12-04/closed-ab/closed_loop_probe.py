"""Profile one contender under the closed-loop test: py-spy on its process(es)."""
import subprocess, sys, time
from pathlib import Path
from inferpool.bench import native_loadgen
from inferpool.bench.overhead import (Options, parse_contenders, start_backends, start_contender,
    wait_answering, TESTS)
from inferpool.bench.native_loadgen import LoadSpec
from inferpool.bench.cpu import cpu_seconds

name, out = sys.argv[1], sys.argv[2]
secs = float(sys.argv[3]) if len(sys.argv) > 3 else 8
(contender,) = parse_contenders(name)
import os
from inferpool.bench import overhead as _ov
_orig_proxy = _ov._proxy
def _proxy(opts, name_, argv, children, running):
    return _orig_proxy(opts, name_, argv + os.environ.get("EXTRA", "").split(), children, running)
_ov._proxy = _proxy
work = Path("/tmp/profwork"); work.mkdir(exist_ok=True)
opts = Options([contender], frozenset({0}), frozenset({1}), work)
model_dir = (work / "model"); model_dir.mkdir(exist_ok=True); model = str(model_dir.resolve())
binary = native_loadgen.ensure_built()
children = []
try:
    backends, _ = start_backends(opts, model, "p", children)
    running = start_contender(contender, backends, model, opts, children)
    closed = [t for t in TESTS if t.name == "closed"][0]
    body = closed.body(model)
    wait_answering(running, TESTS[0].body(model))
    native_loadgen.run(binary, running.targets, LoadSpec(body, 1.0, connections=8, drain_s=5), "1")
    pids = [c.proc.pid for c in running.proxies]
    spy = None
    if out != "-":
        spy = subprocess.Popen(["py-spy", "record", "-r", "250", "-d", str(int(secs - 1)), "-f", sys.argv[4] if len(sys.argv) > 4 else "raw", "-o", out, "-p", str(pids[-1])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = cpu_seconds(pids)
    res = native_loadgen.run(binary, running.targets, LoadSpec(body, secs, closed.connections, 0, drain_s=5), "1")
    spent = cpu_seconds(pids) - before
    print(f"{name} {os.environ.get('EXTRA','')} {os.environ.get('ABL','')}: {res['rps']:.0f} req/s, {spent*1e6/res['ok']:.0f} µs/req (py-spy {'on' if spy else 'off'})")
    if spy: spy.wait()
finally:
    for c in reversed(children): c.stop(10)
