"""The overhead bench's table: one row per measure, one column per contender, medians over rounds
with min–max; latencies as added over `direct` (the same backends without a proxy)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inferpool.bench.overhead import TESTS, LoadTest, Measurement

DIRECT = "direct"
# The plain aiohttp reverse proxy: issue 19 holds `serve` to 1.8x its CPU per request, "measured in
# the same run"; rounds alternate contenders, so a round's pair shares the machine's state.
FLOOR = "bare-aiohttp"
SUSTAINED_SHARE = 0.95  # an open-loop run below this share of the offered rate did not keep up


@dataclass(frozen=True)
class Measure:
    """One row: a number read from each measurement of one test."""

    label: str
    test: str
    read: Callable[[Measurement], float | None]
    added: bool = False  # shown as the difference to direct's median
    per_floor: bool = False  # each round's value over the floor's (FLOOR) in the same round


def _latency(q: str) -> Callable[[Measurement], float | None]:
    return lambda m: float(m.result["latency_ms"][q]) if m.result and m.result["ok"] else None


def _chunk(q: str) -> Callable[[Measurement], float | None]:
    return lambda m: float(m.result["chunk_delay_ms"][q]) if m.result and m.result["chunks"] else None


def _rate(key: str) -> Callable[[Measurement], float | None]:
    return lambda m: float(m.result[key]) if m.result else None


def _cpu_per(key: str) -> Callable[[Measurement], float | None]:
    def read(m: Measurement) -> float | None:
        if m.result is None or m.cpu_s is None or not m.result[key]:
            return None
        return m.cpu_s * 1e6 / float(m.result[key])

    return read


def _is_envoy(process: str) -> bool:
    """Whether a "COMMAND PID" key (bench.cpu) names an Envoy process."""
    return process.startswith("envoy ")


def _picker_cpu_per_request(m: Measurement) -> float | None:
    """CPU µs per request of the picker's processes alone (Envoy's left out): epp-envoy only."""
    pickers = [s for name, s in m.process_cpu_s.items() if not _is_envoy(name)]
    if m.result is None or not m.result["ok"] or len(pickers) == len(m.process_cpu_s) or not pickers:
        return None
    return sum(pickers) * 1e6 / float(m.result["ok"])


def _relay_wait(m: Measurement) -> float | None:
    """µs the relaying process waited for its core per run on it: Envoy's where the contender
    has one (what its picker costs the chunks on a shared core), else all of its processes'."""
    waits = [w for name, w in m.process_wait.items() if _is_envoy(name)] or list(m.process_wait.values())
    runs = sum(runs for _, runs in waits)
    if m.result is None or not runs:
        return None
    return sum(delay for delay, _ in waits) * 1e6 / runs


def _worker_spread(m: Measurement) -> float | None:
    """The busiest picker worker's requests over the mean (1.0: perfectly even); `--workers` only."""
    counts = list(m.worker_streams.values())
    if len(counts) < 2 or not sum(counts):
        return None
    return max(counts) / (sum(counts) / len(counts))


def _busy(side: str) -> Callable[[Measurement], float | None]:
    def read(m: Measurement) -> float | None:
        share: float | None = getattr(m, side)
        return None if share is None else share * 100

    return read


def describe(test: LoadTest) -> str:
    if test.rate:
        return f"open loop {test.rate:,.0f} req/s"
    if test.pace_ms:
        return f"{test.connections} paced streams, a chunk every {test.pace_ms:g} ms"
    if test.stream:
        return f"streamed, {test.events} events per answer, {test.connections} connections"
    return f"closed loop, {test.connections} connections"


def measures(tests: tuple[LoadTest, ...] = TESTS) -> list[Measure]:
    rows: list[Measure] = []
    for test in tests:
        what = describe(test)
        if test.rate:
            rows += [Measure(f"{what}: +p50 ms", test.name, _latency("p50"), added=True),
                     Measure(f"{what}: +p99 ms", test.name, _latency("p99"), added=True)]  # fmt: skip
        elif test.pace_ms:
            # Busy shares too: a paced chunk waits on whichever side's CPU is saturated, and at
            # 128 streams a slow machine's client core (backends + load generator) can be the one.
            rows += [Measure(f"{what}: chunk +p50 ms", test.name, _chunk("p50"), added=True),
                     Measure(f"{what}: chunk +p99 ms", test.name, _chunk("p99"), added=True),
                     Measure("proxy CPUs busy % (paced streams)", test.name, _busy("proxy_busy")),
                     Measure("relay's wait for its core, µs per run (Envoy's where there is one; paced streams)",
                             test.name, _relay_wait),
                     Measure("client + backend CPUs busy % (paced streams)", test.name, _busy("client_busy"))]  # fmt: skip
        elif test.stream:
            rows += [Measure(f"{what}: events/s", test.name, _rate("events_per_s")),
                     Measure("CPU µs per event (streamed)", test.name, _cpu_per("events"))]  # fmt: skip
        else:
            # "closed loop" as before for the default test, so earlier tables keep their labels
            tag = "closed loop" if test.name == "closed" else test.name
            rows += [Measure(f"{what}: req/s", test.name, _rate("rps")),
                     Measure(f"CPU µs per request ({tag})", test.name, _cpu_per("ok")),
                     Measure(f"CPU per request ÷ {FLOOR}'s in the same round ({tag})", test.name,
                             _cpu_per("ok"), per_floor=True),
                     Measure(f"picker's CPU µs per request, Envoy's left out ({tag})", test.name,
                             _picker_cpu_per_request),
                     Measure(f"busiest picker worker's requests ÷ mean ({tag})", test.name, _worker_spread),
                     Measure(f"proxy CPUs busy % ({tag})", test.name, _busy("proxy_busy")),
                     Measure(f"client + backend CPUs busy % ({tag})", test.name, _busy("client_busy"))]  # fmt: skip
    return rows


@dataclass(frozen=True)
class Cell:
    median: float
    low: float
    high: float
    rounds: int
    flagged: bool = False  # an open-loop run that did not sustain the rate


def sustained(m: Measurement, rate: float) -> bool:
    r = m.result
    if r is None or not r["scheduled"]:
        return False
    return r["ok"] >= 0.99 * r["scheduled"] and r["ok"] / max(r["elapsed_s"], 1e-9) >= SUSTAINED_SHARE * rate


def summarize(
    measurements: list[Measurement], contenders: list[str], tests: tuple[LoadTest, ...] = TESTS
) -> dict[str, dict[str, Cell | None]]:
    """contender → row label → cell (None: nothing measured); added rows relative to direct."""
    by_test = {t.name: t for t in tests}
    raw: dict[str, dict[str, list[float]]] = {}
    flags: dict[tuple[str, str], bool] = {}
    for measure in measures(tests):
        floor = _floor_by_round(measurements, measure) if measure.per_floor else {}
        for name in contenders:
            runs = [m for m in measurements if m.contender == name and m.test == measure.test]
            values = [v for v in (measure.read(m) for m in runs) if v is not None]
            if measure.per_floor:
                # the floor's own column stays empty: 1.0 by definition
                values = [] if name == FLOOR else _over_floor(runs, measure, floor)
            raw.setdefault(name, {})[measure.label] = values
            rate = by_test[measure.test].rate
            flags[(name, measure.label)] = bool(rate) and any(not sustained(m, rate) for m in runs)
    table: dict[str, dict[str, Cell | None]] = {}
    for measure in measures(tests):
        baseline = raw.get(DIRECT, {}).get(measure.label, [])
        offset = statistics.median(baseline) if measure.added and baseline else 0.0
        for name in contenders:
            values = raw[name][measure.label]
            if name == DIRECT:
                shifted = values  # direct's own column: the absolute figures the others add to
            else:
                shifted = [v - offset for v in values]
            cell = None
            if shifted:
                median = statistics.median(shifted)
                cell = Cell(median, min(shifted), max(shifted), len(shifted), flags[(name, measure.label)])
            table.setdefault(name, {})[measure.label] = cell
    return table


def _floor_by_round(measurements: list[Measurement], measure: Measure) -> dict[int, float]:
    floor: dict[int, float] = {}
    for m in measurements:
        if m.contender == FLOOR and m.test == measure.test and (value := measure.read(m)):
            floor[m.round] = value
    return floor


def _over_floor(runs: list[Measurement], measure: Measure, floor: dict[int, float]) -> list[float]:
    """Each round's value over the floor's in that round (rounds the floor lacks are left out)."""
    ratios = []
    for m in runs:
        value = measure.read(m)
        if value is not None and m.round in floor:
            ratios.append(value / floor[m.round])
    return ratios


def fmt(value: float, signed: bool = False) -> str:
    size = abs(value)
    text = f"{size:,.0f}" if size >= 100 else f"{size:.1f}" if size >= 10 else f"{size:.2f}"
    if signed:
        return ("+" if value >= 0 else "−") + text
    return ("−" if value < 0 else "") + text


def cell_text(cell: Cell | None, signed: bool) -> str:
    if cell is None:
        return "—"
    text = fmt(cell.median, signed)
    if cell.rounds > 1:
        text += f" ({fmt(cell.low, signed)}…{fmt(cell.high, signed)})"
    return text + (" †" if cell.flagged else "")


def markdown_table(
    measurements: list[Measurement], contenders: list[str], tests: tuple[LoadTest, ...] = TESTS
) -> str:
    table = summarize(measurements, contenders, tests)
    has_direct = DIRECT in contenders
    header = ["measure", *(f"{c} (absolute)" if c == DIRECT else c for c in contenders)]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * len(contenders)]
    for measure in measures(tests):
        if measure.per_floor and FLOOR not in contenders:
            continue  # no floor in this run: nothing to divide by
        label = (
            measure.label
            if has_direct or not measure.added
            else measure.label.replace("+", "") + " (absolute)"
        )
        cells = [
            cell_text(table[c][measure.label], measure.added and c != DIRECT and has_direct)
            for c in contenders
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def footnotes(measurements: list[Measurement], tests: tuple[LoadTest, ...] = TESTS) -> list[str]:
    """Runs that did not keep up, and every error or non-2xx answer, so no figure hides one."""
    notes: list[str] = []
    by_test = {t.name: t for t in tests}
    for m in measurements:
        r = m.result
        if r is None:
            continue
        test = by_test.get(m.test)
        if test is not None and test.rate and not sustained(m, test.rate):
            notes.append(f"† {m.contender}, {m.test}, round {m.round}: did not sustain {test.rate:g} req/s "
                         f"({r['ok']} of {r['scheduled']} answered, {r['ok'] / max(r['elapsed_s'], 1e-9):.0f} req/s, "
                         f"{r['unsent']} never sent)")  # fmt: skip
        errors = {k: v for k, v in r["errors"].items() if v}
        statuses = {k: v for k, v in r["status"].items() if not k.startswith("2")}
        if errors or statuses:
            notes.append(f"{m.contender}, {m.test}, round {m.round}: errors {errors or 'none'}, "
                         f"non-2xx {statuses or 'none'}")  # fmt: skip
    return notes


def summary_json(
    measurements: list[Measurement], contenders: list[str], tests: tuple[LoadTest, ...] = TESTS
) -> dict[str, dict[str, Any]]:
    table = summarize(measurements, contenders, tests)
    return {name: {label: _cell_json(cell) for label, cell in rows.items()} for name, rows in table.items()}


def _cell_json(cell: Cell | None) -> dict[str, Any] | None:
    if cell is None:
        return None
    return {"median": cell.median, "min": cell.low, "max": cell.high, "rounds": cell.rounds,
            "not_sustained": cell.flagged}  # fmt: skip


def _picker_priority(env: dict[str, Any]) -> str:
    nice = env.get("picker_nice", 0)
    if not nice:
        return "; pickers and Envoy at equal CPU shares"
    where = "process and session" if env.get("autogroups") else "process"
    return f"; pickers at nice {nice} ({where}): the data plane first on the shared core"


def header_lines(env: dict[str, Any]) -> list[str]:
    peers = ", ".join(f"{k} {v}" for k, v in env.get("peers", {}).items()) or "none run"
    return [
        f"- machine: {env['nproc']} CPUs, {env['cpu_model']}, Linux {env['kernel']}, Python {env['python']}",
        f"- pinning: proxy on CPU {env['proxy_cpus']}, client and backends on CPU {env['client_cpus']}; "
        f"{env.get('backends', 2)} instant backends, Envoy --concurrency {env.get('envoy_concurrency', 1)}"
        + _picker_priority(env),
        f"- versions: inferpool {env['inferpool']}, Envoy {env['envoy'] or 'not found'}, {peers}",
        f"- {env['rounds']} round(s), {env['duration_s']:g} s per test; medians with min…max over rounds; "
        "`direct` shows absolute figures, other columns latency added over direct's median",
    ]
