"""The EPP's metrics port is the same admin app as the gateway's, with the EPP's token rules."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from inferpool.observe.admin import AdminAuth, admin_app
from inferpool.observe.decisions import DecisionLog
from inferpool.observe.metrics import GatewayMetrics
from inferpool.state import Datastore


async def _allow(_token: str) -> bool:
    return True


async def _client(token: str | None, *, kube: bool = False) -> TestClient:
    store = Datastore()
    auth = AdminAuth(review=_allow) if kube else AdminAuth(static_token=token)
    app = admin_app(store, GatewayMetrics(store), DecisionLog(), lambda: None, auth)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_dashboard_needs_the_metrics_token_as_header_or_query() -> None:
    client = await _client("s3cret")
    try:
        assert (await client.get("/dashboard")).status == 401
        assert (await client.get("/api/dashboard?token=wrong")).status == 401
        page = await client.get("/dashboard?token=s3cret")
        assert page.status == 200 and "text/html" in page.headers["Content-Type"]
        api = await client.get("/api/dashboard", headers={"Authorization": "Bearer s3cret"})
        assert api.status == 200 and "pools" in await api.json()
    finally:
        await client.close()


async def test_dashboard_open_when_metrics_are_open_and_refused_under_token_review() -> None:
    open_client = await _client(None)
    kube_client = await _client(None, kube=True)
    try:
        assert (await open_client.get("/api/dashboard")).status == 200
        assert (await kube_client.get("/dashboard")).status == 403
    finally:
        await open_client.close()
        await kube_client.close()
