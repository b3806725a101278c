"""`inferpool top`: the dashboard in a terminal, for servers without a browser.

Reads the admin port's `/api/dashboard` (the same JSON the page draws) and renders it
with rich: per pool an endpoints table and a models table, then the recent decisions.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
import urllib.error
import urllib.request
from typing import Any

import orjson
import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from inferpool.observe.model_labels import OTHER_MODELS

BLOCKS = "▁▂▃▄▅▆▇█"
PIPED_WIDTH = 200  # columns when the output is no terminal and COLUMNS is unset


def fetch(admin: str, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(admin.rstrip("/") + "/api/dashboard", timeout=timeout) as resp:
        data: dict[str, Any] = orjson.loads(resp.read())
    return data


def sparkline(values: list[float | None] | None, width: int = 20, top: float | None = None) -> str:
    """The last `width` values as block characters (gaps as spaces)."""
    tail = list(values or [])[-width:]
    seen = [v for v in tail if v is not None]
    if not seen:
        return ""
    high = top if top is not None else max(seen)
    if high <= 0:
        return "".join(" " if v is None else BLOCKS[0] for v in tail)
    return "".join(
        " " if v is None else BLOCKS[min(len(BLOCKS) - 1, int(v / high * (len(BLOCKS) - 1) + 0.5))]
        for v in tail
    )


def _num(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "–"
    return str(v) if isinstance(v, int) else f"{v:.{digits}f}"


def endpoints_table(pool: dict[str, Any]) -> Table:
    table = Table(
        title=f"InferencePool {pool['key']}  ({pool['ready_endpoints']}/{len(pool['endpoints'])} ready)",
        title_justify="left",
        expand=True,
    )
    for name, justify in [
        ("endpoint", "left"),
        ("health", "left"),
        ("queue", "right"),
        ("running", "right"),
        ("kv", "right"),
        ("lora active / waiting", "left"),
        ("in flight", "right"),
        ("routed/s", "right"),
        ("routed/s history", "left"),
    ]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for e in pool["endpoints"]:
        m = e["metrics"]
        adapters = ", ".join(m["active_adapters"]) or "–"
        if m["waiting_adapters"]:
            adapters += " / waiting " + ", ".join(m["waiting_adapters"])
        table.add_row(
            e["name"],
            Text("ready", style="green") if e["ready"] else Text("unready", style="bold red"),
            str(m["waiting_queue_size"]),
            str(m["running_requests"]),
            f"{m['kv_cache_usage'] * 100:.0f}%",
            adapters,
            str(e["in_flight"]),
            _num(e.get("rps")),
            Text(sparkline(e.get("series", {}).get("rps")), style="cyan"),
        )
    return table


def _model_label(model: dict[str, Any]) -> str:
    if model["model_name"] == "":  # requests without a body, or too malformed to name one
        return "(no model in the request)"
    if model["model_name"] == OTHER_MODELS:
        return "(other undeclared names)"
    return model["model_name"] + ("" if model["declared"] else " (not declared)")


def models_table(pool: dict[str, Any]) -> Table:
    table = Table(title="models", title_justify="left", expand=True)
    for name in [
        "model",
        "criticality",
        "targets",
        "req/s",
        "requests",
        "TTFT p50 ms",
        "TTFT p99 ms",
        "shed",
    ]:
        table.add_column(name, justify="left" if name in ("model", "criticality", "targets") else "right")
    table.add_column("errors", justify="right")
    for m in pool["models"]:
        s = m["stats"]
        targets = ", ".join(f"{t['name']} w{t['weight']}" for t in m["targets"]) or "itself"
        table.add_row(
            _model_label(m),
            m["criticality"] or "–",
            targets,
            _num(s["rate_rps"], 2),
            str(s["requests"]),
            _num(s["ttft_p50_ms"]),
            _num(s["ttft_p99_ms"]),
            str(s["shed"]),
            str(s["errors"]),
        )
    return table


def decisions_table(decisions: list[dict[str, Any]], limit: int, scores: bool = True) -> Table:
    table = Table(title="recent decisions (newest first)", title_justify="left", expand=True)
    for name in ["time", "request", "model → target", "endpoint", "status", "top candidates", "filtered out"]:
        table.add_column(name, overflow="fold")
    for d in decisions[:limit]:
        target = d["model"] or d.get("request") or "–"
        if d["target_model"] and d["target_model"] != d["model"]:
            target += f" → {d['target_model']}"
        candidates = "\n".join(
            f"{c['endpoint']} {c['total']:.3g}"
            + (
                " (" + ", ".join(f"{k.removesuffix('-scorer')} {v:.2g}" for k, v in c["scores"].items()) + ")"
                if scores
                else ""
            )
            for c in d["ranked"]
        )
        filtered = "\n".join(f"{e}: {why}" for e, why in d.get("filtered_out", {}).items())
        style = "green" if d["status"] < 400 else ("yellow" if d.get("shed") else "red")
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(d["ts"])),
            d["request_id"][:12],
            target,
            d["picked"] or "–",
            Text(str(d["status"] or "–"), style=style),  # 0: an answer the picker did not read
            candidates or "–",
            filtered,
        )
    return table


def render(view: dict[str, Any], decisions: int = 10, width: int = 160) -> RenderableType:
    """One frame: every pool's tables, then the newest decisions (scorer scores when wide enough)."""
    parts: list[RenderableType] = []
    for pool in view["pools"]:
        parts.append(endpoints_table(pool))
        parts.append(models_table(pool))
    if not view["pools"]:
        parts.append(Text("no InferencePools loaded"))
    parts.append(decisions_table(view["decisions"], decisions, scores=width >= 140))
    return Group(*parts)


def top(
    admin: str = typer.Option("http://127.0.0.1:9090", "--admin", help="Admin URL of a gateway or EPP."),
    once: bool = typer.Option(False, "--once", help="Print one frame and exit."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between refreshes."),
    decisions: int = typer.Option(10, "--decisions", min=0, help="How many recent decisions to show."),
) -> None:
    """The live dashboard in the terminal: endpoints, models and recent decisions from the admin API."""
    if not admin.startswith(("http://", "https://")):
        raise typer.BadParameter(
            f"{admin!r}: give the admin URL, e.g. http://127.0.0.1:9090", param_hint="--admin"
        )
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped or redirected (a log, a file): no terminal sets a width, and rich's 80 columns
        # would cut every endpoint and model name short. COLUMNS still decides when set.
        console = Console(width=PIPED_WIDTH)

    def frame() -> RenderableType:
        try:
            return render(fetch(admin), decisions, console.width)
        except (urllib.error.URLError, OSError) as err:  # the admin went away: say so, keep trying
            return Text(f"cannot read {admin}/api/dashboard: {err}", style="red")

    try:
        first = render(fetch(admin), decisions, console.width)  # an admin unreachable at start: exit 1
        if once:
            console.print(first)
            return
        # Piped or redirected, rich's Live draws nothing until it stops: a frame per refresh then.
        live = Live(first, console=console, screen=False, auto_refresh=False) if console.is_terminal else None
        show = console.print if live is None else functools.partial(live.update, refresh=True)
        with live or contextlib.nullcontext():
            if live is None:
                show(first)
            while True:
                time.sleep(interval)
                show(frame())
    except (urllib.error.URLError, OSError) as err:
        typer.echo(f"inferpool top: cannot read {admin}/api/dashboard: {err}", err=True)
        raise typer.Exit(1) from err
    except KeyboardInterrupt:
        pass
