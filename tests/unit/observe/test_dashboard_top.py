"""`inferpool top`: one frame rendered from a live admin server's /api/dashboard."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestServer
from rich.console import Console
from typer.testing import CliRunner

from inferpool.cli import app
from inferpool.observe.admin import admin_app
from inferpool.observe.decisions import DecisionLog
from inferpool.observe.metrics import GatewayMetrics
from inferpool.observe.top import fetch, render, sparkline
from inferpool.records import CandidateScore, HttpFacts, RequestRecord
from inferpool.state import Datastore, Endpoint, EndpointMetrics, ModelRoute, Pool

POOL = "default/pool"


def test_sparkline_scales_to_blocks() -> None:
    assert sparkline([]) == ""
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([0, 5, 10]) == "▁▅█"
    assert sparkline([None, 10]) == " █"
    assert sparkline([1.0] * 50, width=4, top=1.0) == "████"


async def test_top_once_against_admin_server(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = Datastore()
    ds.upsert_pool(Pool("default", "pool", {"app": "x"}, [8000]))
    ds.upsert_model(ModelRoute("default", "food", "food-review", "pool"))
    ready = Endpoint(
        "pod-ready",
        "127.0.0.1",
        8000,
        POOL,
        metrics=EndpointMetrics(waiting_queue_size=7, active_adapters=frozenset({"food-review"})),
    )
    ds.upsert_endpoint(ready)
    ds.upsert_endpoint(Endpoint("pod-down", "127.0.0.1", 8001, POOL, ready=False))
    log = DecisionLog()
    log.add(
        RequestRecord(
            request_id="req-abc123",
            pool=POOL,
            model="food-review",
            target_model="food-review",
            endpoint="pod-ready",
            status=200,
            started_at=0.0,
            e2e_s=0.1,
            scores=(CandidateScore("pod-ready", "127.0.0.1:8000", 1.5, {"queue-scorer": 0.5}),),
            filtered_out={"pod-down": "not-ready"},
        )
    )
    # a GET /health through the gateway: recorded under no model
    log.add(
        RequestRecord(
            request_id="req-get", pool=POOL, model="", target_model="", endpoint="pod-ready",
            status=200, started_at=0.0, e2e_s=0.01, http=HttpFacts("GET", "/health"),
        )
    )  # fmt: skip
    server = TestServer(admin_app(ds, GatewayMetrics(ds), log, lambda: None))
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        view = await asyncio.to_thread(fetch, url)
        console = Console(record=True, width=200)
        console.print(render(view, width=200))
        text = console.export_text()
        for expected in ["default/pool", "pod-ready", "pod-down", "unready", "food-review", "req-abc123"]:
            assert expected in text
        assert "queue 0.5" in text and "pod-down: not-ready" in text
        assert "(no model in the request)" in text and " (not declared)" not in text
        assert "GET /health" in text  # the decision names the request in place of a model

        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["top", "--once", "--admin", url], env={"COLUMNS": "200"}
        )
        assert result.exit_code == 0, result.output
        assert "pod-ready" in result.output and "req-abc123" in result.output
        # piped, no COLUMNS: wide enough for whole names, not rich's 80 columns
        piped = await asyncio.to_thread(
            CliRunner().invoke, app, ["top", "--once", "--admin", url], env={"COLUMNS": None}
        )
        assert piped.exit_code == 0, piped.output
        assert "pod-ready" in piped.output and "req-abc123" in piped.output
        # piped and live: a frame per refresh (rich's Live drew nothing without a terminal)
        naps: list[float] = []

        def nap(seconds: float) -> None:
            naps.append(seconds)
            if len(naps) > 2:
                raise KeyboardInterrupt

        monkeypatch.setattr("inferpool.observe.top.time.sleep", nap)
        live = await asyncio.to_thread(
            CliRunner().invoke, app, ["top", "--admin", url, "--interval", "0.5"], env={"COLUMNS": None}
        )
        assert live.exit_code == 0, live.output
        assert live.output.count("req-abc123") == 3 and naps == [0.5, 0.5, 0.5]
    finally:
        await server.close()


def test_top_unreachable_admin_exits_1() -> None:
    result = CliRunner().invoke(app, ["top", "--once", "--admin", "http://127.0.0.1:9"])
    assert result.exit_code == 1
