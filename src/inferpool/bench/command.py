"""`inferpool bench`: run, compare, simulate."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import typer

from inferpool.bench.arrivals import PROFILES as ARRIVAL_PROFILES
from inferpool.bench.client import ClientConfig, RequestResult
from inferpool.bench.loadgen import TraceSpec, run_load
from inferpool.bench.procs import failure_reason
from inferpool.bench.report import (
    SweepPoint,
    class_table,
    picker_markdown,
    summary_markdown,
    sweep_markdown,
    write_results,
)
from inferpool.bench.stats import Slo, parse_slo, summarize_by_tag
from inferpool.bench.workloads import (
    CACHE_PRESSURE_FLEET,
    WORKLOADS,
    WorkloadOptions,
    class_window_s,
    request_classes,
)
from inferpool.clihelp import PlainHelpCommand, PlainHelpGroup

if TYPE_CHECKING:
    from inferpool.bench.compare import Contender, FleetSpec

bench_app = typer.Typer(
    help="Load tests, side-by-side comparisons, virtual-time scale runs.",
    no_args_is_help=True,
    cls=PlainHelpGroup,
)


def workload_options(
    model: str,
    stream: bool,
    chat: bool,
    adapters: int,
    groups: int,
    prompts_per_group: int,
    system_tokens: int,
) -> WorkloadOptions:
    return WorkloadOptions(
        model=model,
        stream=stream,
        chat=chat,
        adapters=tuple(f"adapter-{i}" for i in range(adapters)),
        groups=groups,
        prompts_per_group=prompts_per_group,
        system_prompt_tokens=system_tokens,
    )


def one_of(what: str, names: Sequence[str]) -> Callable[[str], str]:
    """An option callback: a usage error, before any fleet starts, for a name not in `names`."""

    def check(name: str) -> str:
        if name not in names:
            raise typer.BadParameter(f"unknown {what} {name!r}; choose from {', '.join(names)}")
        return name

    return check


known_workload = one_of("workload", WORKLOADS)
known_arrival = one_of("arrival profile", ARRIVAL_PROFILES)


def valid_slo(text: str | None) -> str | None:
    try:
        parse_slo(text)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    return text


def positive(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value:g}: must be > 0")
    return value


def http_url(text: str) -> str:
    """`--target`: an http(s) URL with a host, as the README's curl writes it with a scheme added."""
    parsed = urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise typer.BadParameter(f"{text!r}: give a URL with http:// or https://, e.g. http://127.0.0.1:8080")
    return text


def scheduler_profile(name: str) -> str:
    """`--profile`: a built-in scheduler profile or an EndpointPickerConfig file that loads."""
    from inferpool.scheduling.config import ConfigError, load_config

    try:
        load_config(name)
    except (ConfigError, OSError) as err:
        raise typer.BadParameter(str(err)) from None
    return name


def fleet_sizes(text: str) -> str:
    """`--replicas`: comma-separated fleet sizes, each ≥ 1."""
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise typer.BadParameter(f"{text!r}: give fleet sizes ≥ 1 separated by commas, e.g. 10,100")
    return text


ARRIVAL_HELP = (
    "poisson; bursty (gamma gaps, CV 2); step (half the run at 0.5x the rate, then 1.5x); "
    "ramp (five steps from 20 to 120 % of the rate)."
)
SLO_HELP = "Goodput SLO: a request counts when within all of ttft=, tpot=, e2e= (e.g. ttft=1s,tpot=100ms)."
SEED_HELP = "Seed of the trace (arrivals, prompts, lengths)."
ADAPTERS_HELP = "multi-lora: requests name adapters adapter-0..N-1, which the target must serve."
SPEED_HELP = "The simulated fleet's --speed (> 0); arrivals and timings are rescaled."


def parse_rates(text: str) -> list[float]:
    """`--rates`: comma-separated requests per second, each > 0."""
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        rates = []
    if not rates or any(not r > 0 for r in rates):  # `not >` also refuses nan
        raise typer.BadParameter(
            f"{text!r}: give rates > 0 separated by commas, e.g. 2,4,8", param_hint="--rates"
        )
    return rates


def each_rate_makes_a_request(rates: list[float], duration: float) -> None:
    """A usage error, before any load or fleet, for a rate that expects less than one request."""
    for r in rates:
        if r * duration < 1:
            raise typer.BadParameter(
                f"{r:g} req/s over {duration:g} s is less than one request; raise --duration or --rate"
            )


@bench_app.command("run", cls=PlainHelpCommand)
def run_command(
    target: str = typer.Option(
        ..., "--target", help="Base URL of an OpenAI-compatible server or gateway.", callback=http_url
    ),
    workload: str = typer.Option(
        "sharegpt-like", "--workload", help=", ".join(WORKLOADS), callback=known_workload
    ),
    rate: float | None = typer.Option(
        None, "--rate", help="Mean arrivals per second (open loop).", callback=positive
    ),
    rates: str | None = typer.Option(None, "--rates", help="Sweep: comma-separated rates, one run each."),
    duration: float = typer.Option(
        60.0, "--duration", help="Seconds of arrivals (simulated seconds).", callback=positive
    ),
    concurrency: int | None = typer.Option(
        None, "--concurrency", min=1, help="Cap in-flight; alone: closed loop."
    ),
    requests: int | None = typer.Option(None, "--requests", min=1, help="Closed loop: total requests."),
    arrival: str = typer.Option("poisson", "--arrival", help=ARRIVAL_HELP, callback=known_arrival),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    slo: str | None = typer.Option("ttft=1s,tpot=100ms", "--slo", help=SLO_HELP, callback=valid_slo),
    model: str = typer.Option(
        "meta-llama/Llama-3.1-8B-Instruct", "--model", help="The model name requests carry."
    ),
    chat: bool = typer.Option(False, "--chat", help="Chat completions instead of completions."),
    no_stream: bool = typer.Option(False, "--no-stream", help="Non-streaming requests (TTFT = e2e)."),
    adapters: int = typer.Option(8, "--adapters", min=1, help=ADAPTERS_HELP),
    groups: int = typer.Option(150, "--groups", min=1, help="shared-prefix: system prompts."),
    prompts_per_group: int = typer.Option(
        5, "--prompts-per-group", min=1, help="shared-prefix: questions per system prompt."
    ),
    system_tokens: int = typer.Option(
        2000, "--system-tokens", min=1, help="shared-prefix: system prompt length."
    ),
    speed: float = typer.Option(1.0, "--speed", help=SPEED_HELP, callback=positive),
    out: Path | None = typer.Option(None, "--out", help="Directory for JSON results and summary.md."),
) -> None:
    """Open-loop (or closed-loop) load against one URL; p50/p90/p99, throughput, goodput."""
    slo_obj = parse_slo(slo)
    opts = workload_options(model, not no_stream, chat, adapters, groups, prompts_per_group, system_tokens)
    closed = rate is None and rates is None
    if closed and not concurrency:
        raise typer.BadParameter("give --rate, --rates or --concurrency")
    sweep = parse_rates(rates) if rates else [rate or 0.0]
    if not closed:
        each_rate_makes_a_request(sweep, duration)
    points: list[SweepPoint] = []
    unserved: list[str] = []  # a run that served nothing: its first error
    classes = request_classes(workload)
    markdown = [f"# inferpool bench run: {workload} against {target}\n"]
    for r in sweep:
        n = requests if requests is not None else (max(1, int((concurrency or 1) * 10)) if closed else None)
        spec = TraceSpec(workload, r or 1.0, duration, seed, arrival, opts, n)
        trace = spec.build()
        if not trace:  # a rate that made no request by chance: the other rates' results stay
            unserved.append(f"no request arrived in {duration:g} s at {r:g} req/s")
            typer.echo(f"-- {unserved[-1]}; raise --duration or --rate", err=True)
            continue
        client = ClientConfig(speed=speed, concurrency=concurrency, closed_loop=closed)
        results, summary = asyncio.run(run_load(target, trace, client, slo_obj, sys.stderr.isatty()))
        if summary.ok == 0:
            unserved.append(_first_error(results))
        title = f"{workload}, " + (f"concurrency {concurrency}" if closed else f"rate {r:g}/s, {arrival}")
        section = summary_markdown(title, summary)
        by_class = summarize_by_tag(results, summary.duration_s, slo_obj, classes)
        if by_class:
            section += "\n" + class_table([(target, by_class)])
        typer.echo(section)
        markdown.append(section)
        points.append(SweepPoint(r, summary))
        if out is not None:
            meta = {"target": target, "spec": _spec_meta(spec), "speed": speed, "time": time.time()}
            write_results(
                out,
                f"{workload}-rate{r:g}" if not closed else f"{workload}-c{concurrency}",
                results,
                summary,
                meta,
                by_class,
            )
    if len(points) > 1:
        table = sweep_markdown(points)
        typer.echo(table)
        markdown.append("## Sweep\n\n" + table)
    if out is not None:
        (out / "summary.md").write_text("\n".join(markdown))
        typer.echo(f"results in {out}")
    if unserved:
        typer.echo(f"inferpool bench run: nothing was served ({unserved[0]})", err=True)
        raise typer.Exit(1)


def _first_error(results: Sequence[RequestResult]) -> str:
    """What went wrong with the first request that failed, as one line."""
    for result in results:
        if result.error:
            return f"first error: {result.error}"
        if result.status != 200:
            return f"first error: HTTP {result.status}"
    return "no request completed"


def _spec_meta(spec: TraceSpec) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(spec)


@bench_app.command("compare", cls=PlainHelpCommand)
def compare_command(
    fleet: int = typer.Option(6, "--fleet", min=1, help="Simulated replicas."),
    workload: str = typer.Option(
        "shared-prefix", "--workload", help=", ".join(WORKLOADS), callback=known_workload
    ),
    rate: float | None = typer.Option(
        None, "--rate", help="Offered rate in simulated req/s.", callback=positive
    ),
    rates: str | None = typer.Option(None, "--rates", help="Several rates: sweep table and vs-rate plot."),
    duration: float = typer.Option(
        60.0, "--duration", help="Simulated seconds of arrivals.", callback=positive
    ),
    contenders: str = typer.Option(
        "default,round-robin,legacy-v0.3,random,epp-envoy,sglang-router,vllm-router,vllm-router:round_robin",
        "--contenders",
        help="Scheduler profiles (built-in or FILE.yaml) behind inferpool serve, epp-envoy[:PROFILE], "
        "sglang-router[:POLICY], vllm-router[:POLICY]; PROFILE@<N>P<M>D runs a P/D fleet layout "
        "(N prefill, M decode replicas, N+M = --fleet) behind inferpool serve, e.g. pd@2P2D.",
    ),
    speed: float = typer.Option(1.0, "--speed", help=SPEED_HELP, callback=positive),
    arrival: str = typer.Option("poisson", "--arrival", help=ARRIVAL_HELP, callback=known_arrival),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    slo: str | None = typer.Option("ttft=1s,tpot=100ms", "--slo", help=SLO_HELP, callback=valid_slo),
    adapters: int = typer.Option(
        8, "--adapters", min=1, help="multi-lora: adapters adapter-0..N-1, on every replica."
    ),
    max_loras: int = typer.Option(
        4, "--max-loras", min=1, help="Fleet LoRA slots per replica (vLLM --max-loras)."
    ),
    max_num_seqs: int | None = typer.Option(
        None,
        "--max-num-seqs",
        min=1,
        help="Fleet batch limit (vLLM --max-num-seqs): saturate at lower rates.",
    ),
    kv_blocks: int | None = typer.Option(
        None, "--kv-blocks", min=1, help="Fleet KV-cache blocks per replica (vLLM --num-gpu-blocks-override)."
    ),
    groups: int = typer.Option(150, "--groups", min=1, help="shared-prefix: system prompts."),
    prompts_per_group: int = typer.Option(
        5, "--prompts-per-group", min=1, help="shared-prefix: questions per system prompt."
    ),
    system_tokens: int = typer.Option(
        2000, "--system-tokens", min=1, help="shared-prefix: system prompt length."
    ),
    seeds: str | None = typer.Option(
        None,
        "--seeds",
        help="Several seeds (e.g. 101,102,103): one run each in <out>/seed<S>, then a table of "
        "medians with min-max over the seeds. Overrides --seed.",
    ),
    out: Path = typer.Option(Path("bench-results"), "--out", help="Directory for results, tables and plots."),
) -> None:
    """Each contender in turn in front of a fresh simulated fleet, replaying one trace.

    Exits 1 (after writing every result) when a contender failed to start or run, or served nothing.
    """
    from inferpool.bench.compare import FleetSpec, needs_kv_events, parse_contenders, write_sim_profile
    from inferpool.bench.table import class_seeds_table, pd_seeds_table, seeds_table

    if rate is None and rates is None:
        raise typer.BadParameter("give --rate or --rates")
    if workload == "cache-pressure" and fleet != CACHE_PRESSURE_FLEET:
        raise typer.BadParameter(
            f"cache-pressure is fixed for {CACHE_PRESSURE_FLEET} replicas (hot set 1.5x the fleet's KV cache)",
            param_hint="--fleet",
        )
    try:
        chosen = parse_contenders(contenders)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--contenders") from None
    for contender in chosen:  # equal GPU count: a layout splits the fleet, it does not resize it
        if contender.layout is not None and contender.layout.replicas != fleet:
            raise typer.BadParameter(
                f"{contender.name}: layout {contender.layout.name} is {contender.layout.replicas} "
                f"replicas, the fleet {fleet}",
                param_hint="--contenders",
            )
    each_rate_makes_a_request(parse_rates(rates) if rates else [rate or 0.0], duration)
    try:
        seed_list = [int(x) for x in seeds.split(",") if x.strip()] if seeds else [seed]
    except ValueError:
        raise typer.BadParameter("comma-separated integers, e.g. 101,102,103", param_hint="--seeds") from None
    _install_peers(chosen)  # last of the checks: it may take a while
    out.mkdir(parents=True, exist_ok=True)
    model_dir = (out / "model").resolve()
    model_dir.mkdir(
        exist_ok=True
    )  # a local path as model id: routers find no tokenizer and look nowhere else
    adapter_names = tuple(f"adapter-{i}" for i in range(adapters)) if workload == "multi-lora" else ()
    # One fleet for all: if any contender's scheduler reads KV-cache events, every run's fleet publishes them.
    try:
        kv_events = needs_kv_events(chosen)
    except ValueError as exc:  # a profile file that is no valid EndpointPickerConfig
        raise typer.BadParameter(str(exc), param_hint="--contenders") from None
    sim_profile = str(write_sim_profile(out, max_num_seqs, kv_blocks)) if max_num_seqs or kv_blocks else None
    opts = workload_options(str(model_dir), True, False, adapters, groups, prompts_per_group, system_tokens)
    if sim_profile:  # cache-pressure sizes its tenants by the KV cache of the profile the fleet runs
        from dataclasses import replace

        from inferpool.sim.profile import load_profile

        fleet_profile = load_profile(sim_profile)
        opts = replace(opts, replica_kv_tokens=fleet_profile.num_gpu_blocks * fleet_profile.block_size)
    sweep = parse_rates(rates) if rates else [rate or 0.0]
    failures: list[str] = []
    by_seed: dict[int, list[SweepPoint]] = {}
    versions: dict[str, str] = {}  # contender -> what ran, read once (after its first run installed it)
    for one_seed in seed_list:
        spec_fleet = FleetSpec(
            fleet, str(model_dir), adapter_names, max_loras, max(max_loras, adapters), speed, one_seed,
            kv_events, sim_profile,
        )  # fmt: skip
        seed_out = out / f"seed{one_seed}" if seeds else out
        seed_out.mkdir(parents=True, exist_ok=True)
        points, failed = _compare_once(
            chosen,
            spec_fleet,
            workload,
            sweep,
            duration,
            arrival,
            opts,
            parse_slo(slo),
            seed_out,
            bool(rates),
            versions,
        )
        by_seed[one_seed] = points
        failures += failed
    if seeds:
        names = [c.name for c in chosen]
        section = (
            f"# inferpool bench compare: {workload}, fleet {fleet}, seeds {', '.join(map(str, seed_list))}\n\n"
            + seeds_table(by_seed, names)
        )
        if classes := request_classes(workload):
            section += "\n# By class\n\n" + class_seeds_table(by_seed, names, classes)
        if any(c.layout is not None for c in chosen):
            aggregated = next((c.name for c in chosen if c.layout is None), names[0])
            section += f"\n# Prefill/decode (SLO {parse_slo(slo).describe() or 'none'})\n\n" + pd_seeds_table(
                by_seed, names, aggregated
            )
        section += "\n## Versions\n\n" + "".join(
            f"- {name}: {version}\n" for name, version in versions.items()
        )
        typer.echo(section)
        (out / "compare.md").write_text(section)
    typer.echo(f"results, plots and compare.md in {out}")
    if failures:
        typer.echo(f"{len(failures)} contender run(s) failed or served nothing", err=True)
        raise typer.Exit(1)


def _install_peers(chosen: list[Contender]) -> None:
    """Each peer router's venv, before the first fleet starts (a failed install ends the run here)."""
    from inferpool.bench.peers import PeerInstallError, ensure_installed

    for contender in chosen:
        if contender.peer is not None and not contender.peer.installed():
            typer.echo(f"-- installing {contender.peer.package} (once; `make peers` does it ahead)", err=True)
            try:
                ensure_installed(contender.peer)
            except PeerInstallError as err:
                typer.echo(f"inferpool bench compare: {err}", err=True)
                raise typer.Exit(1) from None


def _compare_once(
    chosen: list[Contender],
    spec_fleet: FleetSpec,
    workload: str,
    sweep: list[float],
    duration: float,
    arrival: str,
    opts: WorkloadOptions,
    slo_obj: Slo,
    out: Path,
    swept: bool,
    versions: dict[str, str],
) -> tuple[list[SweepPoint], list[str]]:
    """One seed: every rate, every contender; results, plots and compare.md in `out`."""
    from inferpool.bench.compare import run_contender
    from inferpool.bench.plots import plot_cdfs, plot_load, plot_vs_rate
    from inferpool.bench.table import comparison_table, pd_run_table, ratios

    fleet, speed, seed = spec_fleet.replicas, spec_fleet.speed, spec_fleet.seed
    classes = request_classes(workload)
    points: list[SweepPoint] = []
    failures: list[str] = []
    report = [f"# inferpool bench compare: {workload}, fleet {fleet}, seed {seed}\n"]
    for r in sweep:
        trace = TraceSpec(workload, r, duration, seed, arrival, opts).build()
        if not trace:  # no fleet is started for nothing
            failures.append(f"seed {seed}: no request arrives in {duration:g} s at {r:g} req/s")
            typer.echo(f"   {failures[-1]}; raise --duration or --rate", err=True)
            continue
        client = ClientConfig(speed=speed)
        runs = []
        here: list[SweepPoint] = []  # this rate's points, for the P/D table
        failed_here: list[str] = []
        for contender in chosen:
            typer.echo(
                f"-- {contender.name}: {len(trace)} requests at {r:g} req/s (sim), speed {speed:g}, seed {seed}",
                err=True,
            )
            # The machine's load around the run: at speed 1 other work on the same cores shows in the timings.
            started, load_before = time.time(), os.getloadavg()
            try:
                run = run_contender(
                    contender, spec_fleet, trace, client, slo_obj, out, sys.stderr.isatty(), classes,
                    class_window_s(workload, duration),
                )  # fmt: skip
            except Exception as exc:  # one broken contender must not lose the others' results
                typer.echo(f"   {contender.name} failed: {type(exc).__name__}: {exc}", err=True)
                reason = failure_reason(exc)
                failed_here.append(
                    f"{contender.name} at {r:g} req/s failed: {reason} (logs in {out / 'logs'})"
                )
                points.append(SweepPoint(r, None, contender.name, reason))
                here.append(points[-1])
                continue
            if contender.name not in versions:
                versions[contender.name] = contender_version(contender)
            meta = {"contender": contender.name, "version": versions[contender.name], "workload": workload,
                    "fleet": fleet, "rate": r, "speed": speed, "seed": seed, "kv_events": spec_fleet.kv_events,
                    "sim_profile": spec_fleet.sim_profile, "load": run.load,
                    "pickers": [{"streams": p.streams, "cpu_s": p.cpu_s} for p in run.pickers],
                    "started": started, "ended": time.time(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg(),
                    "layout": contender.layout.name if contender.layout else "aggregated",
                    "prefill": run.prefill.to_json() if run.prefill else None}  # fmt: skip
            write_results(
                out, f"{workload}-rate{r:g}-{contender.slug}", run.results, run.summary, meta, run.by_class
            )
            runs.append(run)
            points.append(
                SweepPoint(r, run.summary, contender.name, prefill=run.prefill, by_class=run.by_class or None)
            )
            here.append(points[-1])
            if run.summary.ok == 0:
                failed_here.append(
                    f"{contender.name} at {r:g} req/s served nothing: {run.summary.errors_by_status}"
                )
                typer.echo(f"   {failed_here[-1]}", err=True)
        title = f"{workload}, {fleet} replicas, {r:g} req/s, {duration:g} s, seed {seed}"
        section = f"## {title}\n\n{comparison_table(runs)}\n{ratios(runs)}"
        if any(c.layout is not None for c in chosen):
            section += f"\n### Prefill/decode (SLO {slo_obj.describe() or 'none'})\n\n" + pd_run_table(here)
        if pickers := picker_markdown([(run.contender.name, run.pickers) for run in runs]):
            section += "\n### Picker replicas\n\n" + pickers
        if classes:
            section += "\n### By class\n\n" + class_table(
                [(run.contender.name, run.by_class) for run in runs]
            )
        if failed_here:
            section += "\n" + "".join(f"- {line}\n" for line in failed_here)
        typer.echo(section)
        report.append(section)
        failures += failed_here
        if runs:
            plot_cdfs(runs, out / f"{workload}-rate{r:g}-cdf.png", title)
            plot_load(runs, out / f"{workload}-rate{r:g}-load.png", title)
    if swept:
        order = {c.name: i for i, c in enumerate(chosen)}
        points.sort(key=lambda p: (order[p.contender or ""], p.rate))  # each contender's curve together
        section = f"## Latency vs rate: {workload}, {fleet} replicas\n\n{sweep_markdown(points)}"
        typer.echo(section)
        report.append(section)
        plot_vs_rate(points, out / f"{workload}-vs-rate.png", f"{workload}, {fleet} replicas")
    versions_md = "".join(f"- {name}: {version}\n" for name, version in versions.items())
    report.append(f"## Versions\n\n{versions_md}")
    (out / "compare.md").write_text("\n".join(report))
    return points, failures


def contender_version(contender: Contender) -> str:
    """What ran, recorded in every result file: a peer's installed (pinned) version, else
    inferpool's commit (with Envoy's version for epp-envoy). Read after the contender's first
    run, so a peer installed by that run reports its version."""
    from inferpool.bench.overhead import envoy_version, inferpool_commit

    if contender.peer is not None:
        return f"{contender.peer.package} {contender.peer.version() or 'not installed'}"
    ours = f"inferpool {inferpool_commit()}"
    return f"{ours}, envoy {envoy_version() or 'unknown'}" if contender.envoy else ours


@bench_app.command("simulate", cls=PlainHelpCommand)
def simulate_command(
    replicas: str = typer.Option(
        "10,100,1000", "--replicas", help="Fleet sizes (comma-separated).", callback=fleet_sizes
    ),
    rate: float | None = typer.Option(
        None, "--rate", help="Simulated req/s; default 8 per replica.", callback=positive
    ),
    duration: float = typer.Option(
        10.0, "--duration", help="Simulated seconds of arrivals.", callback=positive
    ),
    workload: str = typer.Option(
        "shared-prefix", "--workload", help=", ".join(WORKLOADS), callback=known_workload
    ),
    profile: str = typer.Option(
        "default",
        "--profile",
        help="Scheduler profile (built-in) or EndpointPickerConfig file.",
        callback=scheduler_profile,
    ),
    seed: int = typer.Option(0, "--seed", help=SEED_HELP),
    slo: str | None = typer.Option("ttft=1s,tpot=100ms", "--slo", help=SLO_HELP, callback=valid_slo),
) -> None:
    """The real Director and scheduler over simulated engines in virtual time (no sockets, no sleeping)."""
    from inferpool.bench.stats import percentile, summarize
    from inferpool.bench.virtual import simulate

    lines = [
        "| replicas | rate req/s | requests | sim s | wall s | wall s per sim s | decision p50 µs | decision p99 µs "
        "| p99 TTFT ms | goodput req/s | prefix hit |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in (int(x) for x in replicas.split(",") if x.strip()):
        r = rate if rate is not None else 8.0 * n
        opts = WorkloadOptions(groups=max(20, 4 * n), system_prompt_tokens=1000, output_tokens=64)
        trace = TraceSpec(workload, r, duration, seed, "poisson", opts).build()
        run = simulate(trace, n, profile, seed=seed)
        s = summarize(run.results, run.sim_seconds, parse_slo(slo))
        p50, p99 = percentile(run.decision_seconds, 50) or 0.0, percentile(run.decision_seconds, 99) or 0.0
        hit = "-" if s.prefix_hit_rate is None else f"{s.prefix_hit_rate:.1%}"
        lines.append(
            f"| {n} | {r:g} | {len(trace)} | {run.sim_seconds:.1f} | {run.wall_seconds:.1f} | "
            f"{run.wall_per_sim_second:.2f} | {p50 * 1e6:.0f} | {p99 * 1e6:.0f} | "
            f"{(s.ttft.p99 or 0) * 1000:.0f} | {s.goodput_rps:.1f} | {hit} |"
        )
        typer.echo(lines[-1], err=True)
    typer.echo("\n".join(lines))


@bench_app.command("overhead", cls=PlainHelpCommand)
def overhead_command(
    contenders: str | None = typer.Option(
        None,
        "--contenders",
        help="Comma-separated: direct, envoy, epp-envoy[:MODE[:WORKERS]], epp-aio-envoy[:MODE[:WORKERS]], "
        "epp-noop-envoy[:US][:skip], epp-noop-threaded-envoy[:US][:skip], serve[:PROFILE], bare-aiohttp[:US], sglang-router[:POLICY], vllm-router[:POLICY]. Default: all of them (the --smoke "
        "set with --smoke).",
    ),
    tests: str | None = typer.Option(
        None,
        "--tests",
        help="Comma-separated tests: open-200, open-500, open-1000, closed, stream, paced, closed-256. "
        "Default: all but closed-256.",
    ),
    backends: int = typer.Option(2, "--backends", min=1, help="Instant backends (one process each)."),
    envoy_concurrency: int = typer.Option(
        1, "--envoy-concurrency", min=1, help="Envoy's worker threads (1 matches one proxy core)."
    ),
    picker_nice: int | None = typer.Option(
        None,
        "--picker-nice",
        min=0,
        max=19,
        help="The pickers' niceness against Envoy on the shared proxy core (process and session); "
        "default 0: equal CPU shares (the pickers' batch CPU policy still yields to Envoy on waking).",
    ),
    rounds: int | None = typer.Option(None, "--rounds", min=1, help="Rounds (medians, min…max); default 3."),
    duration: float | None = typer.Option(None, "--duration", min=0.1, help="Seconds per test; default 5."),
    proxy_cpus: str | None = typer.Option(
        None, "--proxy-cpus", help="CPUs for the proxy's processes, e.g. 0 or 0-3 (default: the first one)."
    ),
    client_cpus: str | None = typer.Option(
        None, "--client-cpus", help="CPUs for the load generator and backends (default: the second one)."
    ),
    smoke: bool = typer.Option(
        False, "--smoke", help="A few seconds: contenders that need no install, 1 round, tiny durations."
    ),
    out: Path | None = typer.Option(None, "--out", help="Default: bench/results/<date>/overhead."),
) -> None:
    """What each data plane costs: added latency, req/s, CPU per request, streaming, paced chunks.

    Each contender in turn in front of two instant backends, pinned to its own CPUs, driven by a
    compiled load generator. Exits 1 (after writing every result) when a contender failed.
    """
    import orjson

    from inferpool.bench import overhead, overhead_report
    from inferpool.bench.cpu import cpu_list, default_split, parse_cpus

    try:
        chosen = overhead.parse_contenders(
            contenders or (overhead.SMOKE_CONTENDERS if smoke else overhead.DEFAULT_CONTENDERS)
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--contenders") from None
    try:
        chosen_tests = overhead.parse_tests(tests) if tests else overhead.TESTS
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tests") from None
    default_proxy, default_client = default_split()
    try:
        proxy_set = parse_cpus(proxy_cpus) if proxy_cpus else default_proxy
        client_set = parse_cpus(client_cpus) if client_cpus else default_client
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    allowed = frozenset(os.sched_getaffinity(0))
    for flag, cpus in (("--proxy-cpus", proxy_set), ("--client-cpus", client_set)):
        if not cpus <= allowed:  # taskset would fail in every run, after the fleet started
            raise typer.BadParameter(
                f"CPU {', '.join(map(str, sorted(cpus - allowed)))} is not one this process may use "
                f"({cpu_list(allowed)})",
                param_hint=flag,
            )
    if proxy_set & client_set:
        typer.echo("warning: proxy and client share CPUs; CPU and latency figures will mix", err=True)
    out = out or Path("bench") / "results" / time.strftime("%Y-%m-%d") / "overhead"
    out.mkdir(parents=True, exist_ok=True)
    opts = overhead.Options(
        chosen, proxy_set, client_set, out.resolve(),
        rounds=rounds or (1 if smoke else 3),
        duration_s=duration or (0.6 if smoke else 5.0),
        warmup_s=0.3 if smoke else 1.0,
        drain_s=2.0 if smoke else 5.0,
        tests=chosen_tests, backends=backends, envoy_concurrency=envoy_concurrency,
        picker_nice=overhead.PICKER_NICE if picker_nice is None else picker_nice,
    )  # fmt: skip
    env = overhead.environment(opts)
    measurements, failures = overhead.run_overhead(opts, lambda line: typer.echo(line, err=True))
    names = [c.name for c in chosen]
    table = overhead_report.markdown_table(measurements, names, opts.tests)
    notes = overhead_report.footnotes(measurements, opts.tests) + [f"failed: {f}" for f in failures]
    report = "\n".join(["# inferpool bench overhead\n", *overhead_report.header_lines(env), "", table])
    if notes:
        report += "\n" + "".join(f"- {note}\n" for note in notes)
    typer.echo(report)
    (out / "overhead.md").write_text(report)
    document = {
        "meta": env,
        "contenders": names,
        "summary": overhead_report.summary_json(measurements, names, opts.tests),
        "measurements": [m.__dict__ for m in measurements],
        "failures": failures,
    }
    (out / "overhead.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    typer.echo(f"results in {out}/overhead.md and overhead.json (process logs in {out}/logs)", err=True)
    if failures:
        raise typer.Exit(1)
