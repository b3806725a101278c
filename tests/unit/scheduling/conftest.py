"""Shared builders for scheduling tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from inferpool.scheduling import SchedulingRequest
from inferpool.state import Endpoint, EndpointMetrics

_ids = itertools.count()


def ep(
    name: str, *, queue: int = 0, running: int = 0, kv: float = 0.0, in_flight: int = 0, **metrics: object
) -> Endpoint:
    """An endpoint in pool default/p with the given load."""
    n = int(name.rsplit("-", 1)[-1]) if name.rsplit("-", 1)[-1].isdigit() else 0
    return Endpoint(
        name=name,
        address=f"10.0.0.{n + 1}",
        port=8000,
        pool="default/p",
        metrics=EndpointMetrics(
            waiting_queue_size=queue,
            running_requests=running,
            kv_cache_usage=kv,
            **metrics,  # type: ignore[arg-type]
        ),
        in_flight=in_flight,
    )


def req(
    prompt: str = "hello", *, model: str = "m", priority: int = 0, request_id: str | None = None, **kw: object
) -> SchedulingRequest:
    return SchedulingRequest(
        request_id=request_id or f"r{next(_ids)}",
        pool="default/p",
        target_model=model,
        prompt=prompt,
        priority=priority,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def make_ep() -> Callable[..., Endpoint]:
    return ep


@pytest.fixture
def make_req() -> Callable[..., SchedulingRequest]:
    return req
