"""Bearer tokens on the metrics port, checked the Kubernetes way: TokenReview, then SubjectAccessReview.

This is what upstream's EPP does with controller-runtime's authn/authz filter, and what the
guide's `metrics-reader` ClusterRole (`nonResourceURLs: ["/metrics"], verbs: ["get"]`)
grants. Answers are cached briefly so a scraping Prometheus costs two API calls a minute.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from kubernetes_asyncio import client

log = logging.getLogger(__name__)


class KubeTokenReviewer:
    """`await reviewer(token)` is True when the token's user may `get /metrics`."""

    def __init__(self, api: client.ApiClient, ttl_s: float = 30.0, path: str = "/metrics") -> None:
        self.authn = client.AuthenticationV1Api(api)
        self.authz = client.AuthorizationV1Api(api)
        self.ttl_s = ttl_s
        self.path = path
        self._cache: dict[str, tuple[float, bool]] = {}

    async def __call__(self, token: str) -> bool:
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            allowed = await self._review(token)
        except Exception as err:  # API server unreachable: deny, do not cache
            log.warning("metrics auth: review failed: %s", err)
            return False
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[token] = (now + self.ttl_s, allowed)
        return allowed

    async def _review(self, token: str) -> bool:
        review = await _post(
            self.authn.create_token_review,
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
        )
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return False
        user = status.get("user") or {}
        spec: dict[str, Any] = {
            "user": user.get("username"),
            "groups": user.get("groups") or [],
            "nonResourceAttributes": {"path": self.path, "verb": "get"},
        }
        if user.get("uid"):
            spec["uid"] = user["uid"]
        if user.get("extra"):
            spec["extra"] = user["extra"]
        access = await _post(
            self.authz.create_subject_access_review,
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec},
        )
        return bool((access.get("status") or {}).get("allowed"))


async def _post(create: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await create(body, _preload_content=False)
    try:
        data = await response.read()
        if not 200 <= response.status < 300:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        result: dict[str, Any] = json.loads(data)
        return result
    finally:
        response.release()
