"""The syncer's own HTTP face: /metrics for Prometheus and /healthz for the kubelet."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from inferpool.lora.syncer import LoRASyncer


def status_app(syncer: LoRASyncer) -> web.Application:
    """/metrics is the syncer's registry; /healthz is 200 while its loop is alive, with its state as JSON."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=syncer.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        alive = syncer.running
        body = {"status": "ok" if alive else "stopped", **syncer.status()}
        return web.json_response(body, status=200 if alive else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


async def serve_status(syncer: LoRASyncer, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Starts the status server; returns the runner (to clean up) and the bound port (port 0 picks one)."""
    runner = web.AppRunner(status_app(syncer), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, int(runner.addresses[0][1])
