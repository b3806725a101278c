"""One load-generator run: trace → requests with a progress bar → summary."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from inferpool.bench.arrivals import arrival_times
from inferpool.bench.client import ClientConfig, RequestResult, run_trace
from inferpool.bench.stats import Slo, Summary, summarize
from inferpool.bench.workloads import BenchRequest, WorkloadOptions, build_trace


@dataclass(frozen=True)
class TraceSpec:
    """Everything that fixes a trace: same spec, same requests at the same times."""

    workload: str
    rate: float
    duration: float
    seed: int = 0
    arrival: str = "poisson"
    options: WorkloadOptions = field(default_factory=WorkloadOptions)
    requests: int | None = None  # closed loop: how many requests (arrival times ignored)

    def build(self) -> list[BenchRequest]:
        if self.requests is not None:
            times = [0.0] * self.requests
        else:
            times = arrival_times(
                self.arrival, self.rate, self.duration, random.Random(f"arrivals:{self.seed}")
            )
        # The workloads that tag requests by their step of a ramp need the arrival window.
        return build_trace(self.workload, times, self.seed, replace(self.options, duration_s=self.duration))


async def run_load(
    target: str, trace: list[BenchRequest], client: ClientConfig, slo: Slo, show_progress: bool = True
) -> tuple[list[RequestResult], Summary]:
    """Replay `trace` against `target`, with a rich progress bar on a terminal."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        disable=not show_progress,
        transient=True,
    ) as progress:
        task = progress.add_task(target, total=len(trace), status="")
        failures = 0

        def done(r: RequestResult) -> None:
            nonlocal failures
            failures += 0 if r.ok else 1
            progress.update(task, advance=1, status=f"errors {failures}")

        results, elapsed = await run_trace(target, trace, client, done)
    return results, summarize(results, elapsed, slo)
