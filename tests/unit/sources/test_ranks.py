"""Data-parallel ranks as llm-d-router maps them: one endpoint per target port, `<pod>-rank-<i>`,
narrowed by the active-ports annotation."""

from __future__ import annotations

from typing import Any

import pytest

from inferpool.sources.kubernetes.objects import pod_endpoints
from inferpool.sources.ranks import ACTIVE_PORTS_ANNOTATION, LEGACY_ACTIVE_PORTS_ANNOTATION, active_ranks
from inferpool.state import Pool

PORTS = [8000, 8001, 8002, 8003]


def _pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "vllm-dp", "labels": {"app": "vllm"}, "annotations": annotations or {}},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.7",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def test_every_target_port_is_a_rank_named_after_its_position() -> None:
    pool = Pool("default", "dp", {"app": "vllm"}, PORTS)
    got = [(e.name, e.hostport) for e in pod_endpoints(_pod(), pool)]
    assert got == [
        ("vllm-dp-rank-0", "10.0.0.7:8000"),
        ("vllm-dp-rank-1", "10.0.0.7:8001"),
        ("vllm-dp-rank-2", "10.0.0.7:8002"),
        ("vllm-dp-rank-3", "10.0.0.7:8003"),
    ]


def test_active_ports_narrow_the_ranks_and_keep_their_indexes() -> None:
    pool = Pool("default", "dp", {"app": "vllm"}, PORTS)
    got = [(e.name, e.port) for e in pod_endpoints(_pod({ACTIVE_PORTS_ANNOTATION: "8003, 8001"}), pool)]
    assert got == [("vllm-dp-rank-1", 8001), ("vllm-dp-rank-3", 8003)]


@pytest.mark.parametrize(
    ("annotations", "ranks"),
    [
        ({}, [(0, 8000), (1, 8001), (2, 8002), (3, 8003)]),
        ({LEGACY_ACTIVE_PORTS_ANNOTATION: "8002"}, [(2, 8002)]),
        # llm-d's annotation wins over the Inference Extension's older one
        ({ACTIVE_PORTS_ANNOTATION: "8000", LEGACY_ACTIVE_PORTS_ANNOTATION: "8002"}, [(0, 8000)]),
        ({ACTIVE_PORTS_ANNOTATION: "9000,x,-1,0"}, []),  # nothing valid: the pod serves no rank
        ({ACTIVE_PORTS_ANNOTATION: ""}, []),
    ],
)
def test_active_ranks(annotations: dict[str, str], ranks: list[tuple[int, int]]) -> None:
    assert active_ranks(PORTS, annotations) == ranks


def test_a_single_port_pool_keeps_the_pod_name() -> None:
    pool = Pool("default", "one", {"app": "vllm"}, [8000])
    assert [e.name for e in pod_endpoints(_pod(), pool)] == ["vllm-dp"]
